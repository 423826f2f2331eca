// One run: summary, timeline chart, input and output, pending waits, signal and cancel.
"use strict";

(function () {
  const runId = new URLSearchParams(location.search).get("id") || "";
  const KINDS = ["step", "timer", "signal", "update", "compensation", "child"];
  const COLORS = {
    step: "#2f6fc6", timer: "#8a5cc6", signal: "#c6862f", update: "#2fa3c6",
    compensation: "#c65c8a", child: "#4c9a6a",
  };
  document.title = `${runId} · bridge ui`;
  UI.replace(document.getElementById("legend"), KINDS.map((k) =>
    UI.el("span", {}, UI.el("i", { class: `kind-${k}` }), k)));
  for (const k of KINDS) {
    const swatch = document.querySelector(`.legend i.kind-${k}`);
    swatch.style.background = COLORS[k];
  }

  function short(value, limit) {
    const text = typeof value === "string" ? value : JSON.stringify(value);
    if (text === undefined) return "";
    return text.length > limit ? `${text.slice(0, limit - 1)}…` : text;
  }

  function renderSummary(run) {
    const rows = [
      ["id", UI.el("span", { class: "mono" }, run.id)],
      ["workflow", run.workflow],
      ["engine", `${run.engine}${run.engine !== run.backend ? ` (${run.backend})` : ""}`],
      ["status", UI.badge(run.status, run.blocked ? `${run.status} (blocked)` : null)],
      ["started", UI.time(run.created)],
      [run.terminal ? "ended" : "updated", UI.time(run.updated)],
    ];
    if (run.waiting_for) rows.push(["waiting for", run.waiting_for]);
    if (run.error) rows.push(["error", UI.el("span", { class: "error" }, run.error)]);
    const attrs = Object.entries(run.search_attributes || {});
    if (attrs.length) rows.push(["search attributes", attrs.map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(" ")]);
    UI.replace(document.getElementById("summary"),
      rows.map(([k, v]) => [UI.el("dt", {}, k), UI.el("dd", { "data-field": k }, v)]));
    UI.replace(document.getElementById("title"), "Run ", UI.el("span", { class: "mono" }, run.id));
  }

  // The chart: one row per bar, placed by its offset from the run's start.
  function renderTimeline(run) {
    const box = document.getElementById("timeline");
    if (!run.bars.length) {
      UI.replace(box, UI.el("div", { class: "empty" }, "no steps yet"));
      return;
    }
    const W = 1000, LABEL = 230, RIGHT = 150, ROW = 24, TOP = 22;
    const span = Math.max(run.span, ...run.bars.map((b) => b.offset + (b.duration || 0)), 0.001);
    const x = (t) => LABEL + (Math.max(0, t) / span) * (W - LABEL - RIGHT);
    const height = TOP + run.bars.length * ROW + 6;
    const chart = UI.svg("svg", { class: "chart", viewBox: `0 0 ${W} ${height}`,
      role: "img", "aria-label": "timeline" });
    for (let i = 0; i <= 4; i++) {
      const t = (span * i) / 4;
      chart.append(UI.svg("line", { x1: x(t), x2: x(t), y1: TOP - 6, y2: height,
        stroke: "#e3e7ec" }));
      chart.append(UI.svg("text", { x: x(t), y: 12, "text-anchor": "middle", class: "muted" },
        `+${UI.duration(t)}`));
    }
    run.bars.forEach((bar, i) => {
      const y = TOP + i * ROW;
      const end = bar.duration === null ? span : bar.offset + bar.duration;
      const left = x(bar.offset);
      const width = Math.max(3, x(end) - left);
      const failed = bar.status === "failed";
      const title = `${bar.kind} ${bar.name}` +
        (bar.attempts ? ` · ${bar.attempts} attempt(s)` : "") +
        (bar.duration !== null ? ` · ${UI.duration(bar.duration)}` : " · open") +
        (bar.error ? ` · ${bar.error}` : "");
      const g = UI.svg("g", { class: `bar ${bar.kind} ${bar.status}`, "data-name": bar.name },
        UI.svg("title", {}, title));
      const label = `${bar.step === null ? "" : `${bar.step}. `}${bar.name}`;
      g.append(UI.svg("text", { x: 4, y: y + 15 }, short(label, 34)));
      g.append(UI.svg("rect", { x: left, y: y + 4, width, height: ROW - 9, rx: 3,
        fill: failed ? "#c62f2f" : COLORS[bar.kind] || "#888",
        "fill-opacity": bar.status === "open" ? 0.35 : 0.9,
        stroke: bar.status === "open" ? COLORS[bar.kind] : "none", "stroke-dasharray": "4 3" }));
      for (const failure of bar.failures) {
        const fx = x(failure.offset);
        g.append(UI.svg("line", { x1: fx, x2: fx, y1: y + 1, y2: y + ROW - 2,
          stroke: "#c62f2f", "stroke-width": 2 },
          UI.svg("title", {}, `attempt ${failure.attempt} failed: ${failure.error}` +
            (failure.will_retry ? " (retried)" : ""))));
      }
      const note = [bar.attempts > 1 ? `×${bar.attempts}` : "",
        bar.duration === null ? "open" : UI.duration(bar.duration)].filter(Boolean).join(" · ");
      g.append(UI.svg("text", { x: Math.min(left + width + 6, W - RIGHT + 6), y: y + 15,
        class: "muted" }, note));
      chart.append(g);
    });
    UI.replace(box, chart);
  }

  function renderSteps(run) {
    const body = document.querySelector("#steps tbody");
    UI.replace(body, run.bars.map((bar) => {
      const retried = bar.failures.filter((f) => f.will_retry);
      const outcome = bar.error
        ? UI.el("span", { class: "error" }, bar.error)
        : bar.status === "completed" ? UI.el("code", {}, short(bar.result, 120)) : "";
      return UI.el("tr", { "data-kind": bar.kind, "data-name": bar.name },
        UI.el("td", { class: "num" }, bar.step === null ? "" : String(bar.step)),
        UI.el("td", {}, bar.kind),
        UI.el("td", {}, bar.name, bar.detail ? UI.el("div", { class: "note" }, bar.detail) : null),
        UI.el("td", { class: "num attempts" }, bar.attempts ? String(bar.attempts) : ""),
        UI.el("td", { class: "num" }, bar.duration === null ? "open" : UI.duration(bar.duration)),
        UI.el("td", {}, UI.badge(bar.status)),
        UI.el("td", {}, outcome, retried.map((f) => UI.el("div", { class: "note error retry" },
          `attempt ${f.attempt} failed, retried: ${f.error}`))));
    }));
  }

  function renderPending(run) {
    const list = document.getElementById("pending");
    if (!run.pending.length) {
      UI.replace(list, UI.el("li", { class: "muted" }, run.terminal ? "the run has ended" : "nothing"));
      return;
    }
    UI.replace(list, run.pending.map((p) => UI.el("li", {},
      UI.el("b", {}, p.kind), ` ${p.name}`, p.since ? ` since ${UI.time(p.since)}` : "")));
  }

  let lastRun = null;
  const nameField = document.getElementById("signal-name");
  function renderActions(run) {
    for (const button of document.querySelectorAll("#actions button")) button.disabled = run.terminal;
    if (run.waiting_for && !nameField.value && document.activeElement !== nameField) {
      nameField.value = run.waiting_for;
    }
  }

  const result = document.getElementById("action-result");
  document.getElementById("signal-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = nameField.value.trim();
    let payload;
    try {
      payload = JSON.parse(document.getElementById("signal-payload").value || "null");
    } catch (err) {
      UI.flash(result, false, `the payload is not valid JSON: ${err.message}`);
      return;
    }
    const ok = await UI.confirm(`Send signal "${name}" to ${runId}?`,
      UI.el("pre", {}, UI.json(payload)));
    if (!ok) return;
    try {
      const answer = await UI.api("/api/signal", { id: runId, name, payload });
      UI.flash(result, true, answer.message);
      refresh();
    } catch (err) {
      UI.flash(result, false, err.message);
    }
  });
  document.getElementById("cancel-run").addEventListener("click", async () => {
    const ok = await UI.confirm(`Cancel ${runId}?`, UI.el("p", {},
      "The run is asked to cancel; its compensations, if any, still run."));
    if (!ok) return;
    try {
      const answer = await UI.api("/api/cancel", { id: runId });
      UI.flash(result, true, answer.message);
      refresh();
    } catch (err) {
      UI.flash(result, false, err.message);
    }
  });

  const refresh = UI.poll(async () => {
    let run;
    try {
      run = await UI.api(`/api/run?id=${encodeURIComponent(runId)}`);
    } catch (err) {
      UI.flash(document.getElementById("missing"), false, err.message);
      throw err;
    }
    document.getElementById("missing").replaceChildren();
    const text = JSON.stringify(run);
    if (text === lastRun) return;  // nothing moved: keep the page as it is
    lastRun = text;
    renderSummary(run);
    renderTimeline(run);
    renderSteps(run);
    document.getElementById("input").textContent = UI.json(run.input);
    document.getElementById("output").textContent =
      run.output !== null ? UI.json(run.output) : run.error || (run.terminal ? "" : "(not finished)");
    renderPending(run);
    renderActions(run);
  }, 2000);
})();
