// Migrations: per workflow type the rule, each engine's runs and drain state, a chart of
// open and finished runs over time, shadow outcomes with their diffs, and dead letters.
"use strict";

(function () {
  const PALETTE = ["#2f6fc6", "#c6862f", "#4c9a6a", "#8a5cc6", "#c65c8a", "#2fa3c6"];
  const openDiffs = new Set();  // diffs the user opened (or closed) stay that way

  function ruleLine(wf) {
    if (!wf.from) return UI.el("p", { class: "muted" }, "no rule (runs routed before it was removed)");
    const ramp = wf.shadow ? 0 : wf.ramp;
    const bar = UI.el("span", { class: "ramp", title: `${ramp}% of new runs on ${wf.to}` },
      UI.el("span", {}));
    bar.firstChild.style.width = `${Math.max(0, Math.min(100, ramp))}%`;
    return UI.el("p", { class: "rule" },
      UI.el("b", {}, wf.from), " → ", UI.el("b", {}, wf.to), "  ",
      wf.shadow ? UI.badge("pending", "shadow") : [bar, " ", UI.el("b", { class: "ramp-value" }, `ramp ${ramp}%`)],
      wf.paused ? [" ", UI.badge("CANCELLED", "paused")] : null,
      UI.el("span", { class: "note" }, `  (${wf.rule})`));
  }

  function enginesTable(wf) {
    return UI.el("table", { class: "engines" },
      UI.el("thead", {}, UI.el("tr", {}, ["engine", "role", "open", "finished", "failed starts",
        "shadow", "state"].map((h, i) => UI.el("th", { class: i >= 2 && i <= 4 ? "num" : null }, h)))),
      UI.el("tbody", {}, wf.engines.map((e) => UI.el("tr", { "data-engine": e.engine },
        UI.el("td", {}, e.engine), UI.el("td", {}, e.role),
        UI.el("td", { class: "num open" }, String(e.open)),
        UI.el("td", { class: "num finished" }, String(e.finished)),
        UI.el("td", { class: `num${e.failed_starts ? " error" : ""}` }, String(e.failed_starts)),
        UI.el("td", {}, Object.entries(e.shadow).map(([k, n]) => `${n} ${k}`).join(", ")),
        UI.el("td", {}, UI.badge(e.state))))));
  }

  // Open (solid) and finished (dashed) runs per engine at each time point.
  function chart(wf) {
    const times = wf.chart.times;
    const engines = Object.entries(wf.chart.engines);
    if (!times.length || !engines.length) return UI.el("div", { class: "empty" }, "no routed runs yet");
    const W = 520, H = 150, L = 34, B = 20, T = 8;
    const top = Math.max(1, ...engines.flatMap(([, s]) => [...s.open, ...s.finished]));
    const x = (i) => L + (i / (times.length - 1)) * (W - L - 8);
    const y = (n) => T + (1 - n / top) * (H - T - B);
    const svg = UI.svg("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img",
      "aria-label": `runs of ${wf.workflow} per engine over time` });
    for (const n of [0, Math.round(top / 2), top]) {
      svg.append(UI.svg("line", { x1: L, x2: W - 8, y1: y(n), y2: y(n), stroke: "#e3e7ec" }));
      svg.append(UI.svg("text", { x: L - 4, y: y(n) + 4, "text-anchor": "end", class: "muted" }, String(n)));
    }
    svg.append(UI.svg("text", { x: L, y: H - 4, class: "muted" }, UI.time(times[0])));
    svg.append(UI.svg("text", { x: W - 8, y: H - 4, "text-anchor": "end", class: "muted" }, "now"));
    const legend = UI.el("div", { class: "legend" });
    engines.forEach(([engine, series], k) => {
      const color = PALETTE[k % PALETTE.length];
      const path = (values) => values.map((n, i) => `${i ? "L" : "M"}${x(i).toFixed(1)},${y(n).toFixed(1)}`).join(" ");
      svg.append(UI.svg("path", { d: path(series.open), fill: "none", stroke: color, "stroke-width": 2 },
        UI.svg("title", {}, `${engine}: open`)));
      svg.append(UI.svg("path", { d: path(series.finished), fill: "none", stroke: color,
        "stroke-width": 1.5, "stroke-dasharray": "5 3" }, UI.svg("title", {}, `${engine}: finished`)));
      const swatch = UI.el("i", {});
      swatch.style.background = color;
      legend.append(UI.el("span", {}, swatch, `${engine} (open —, finished - -)`));
    });
    return UI.el("div", {}, svg, legend);
  }

  function shadowsTable(wf) {
    if (!wf.shadows.length) return UI.el("p", { class: "muted" }, wf.shadow ? "no shadow run yet" : "");
    return UI.el("table", { class: "shadows" },
      UI.el("thead", {}, UI.el("tr", {}, ["run", "primary → candidate", "outcome", "first diff",
        "finished"].map((h) => UI.el("th", {}, h)))),
      UI.el("tbody", {}, wf.shadows.map((s) => {
        const row = UI.el("tr", { "data-id": s.workflow_id },
          UI.el("td", { class: "mono" }, UI.runLink(s.workflow_id)),
          UI.el("td", {}, `${s.primary_engine} → ${s.candidate_engine}`),
          UI.el("td", {}, UI.badge(s.status)),
          UI.el("td", {}, s.first_step === null ? "" : `step ${s.first_step}`),
          UI.el("td", {}, UI.time(s.finished_at)));
        if (!s.diff) return row;
        const key = s.shadow_id;
        const open = openDiffs.has(key) !== (s.status === "mismatched");
        const details = UI.el("details", { class: "diff", open },
          UI.el("summary", {}, "step-by-step diff"), UI.el("pre", { class: "diff-text" }, s.diff));
        details.addEventListener("toggle", () => {
          if (details.open !== (s.status === "mismatched")) openDiffs.add(key); else openDiffs.delete(key);
        });
        return [row, UI.el("tr", { class: "diff-row" }, UI.el("td", { colspan: 5 }, details))];
      })));
  }

  function workflowCard(wf) {
    return UI.el("section", { class: "card workflow", "data-workflow": wf.workflow },
      UI.el("h2", {}, wf.workflow), ruleLine(wf),
      UI.el("div", { class: "cols" },
        UI.el("div", {}, enginesTable(wf)),
        UI.el("div", {}, UI.el("h3", {}, "runs per engine over time"), chart(wf))),
      UI.el("h3", {}, "shadow runs"), shadowsTable(wf));
  }

  let last = null;
  UI.poll(async () => {
    const data = await UI.api("/api/migrations");
    const text = JSON.stringify({ ...data, refreshed: null });
    if (text === last) return;
    last = text;
    UI.replace(document.getElementById("warning"),
      data.warning ? UI.el("div", { class: "flash bad" }, data.warning) : null);
    const box = document.getElementById("workflows");
    if (!data.migrating) {
      UI.replace(box, UI.el("div", { class: "card empty" },
        "no migrating workflows: add a [migrate.WORKFLOW] table to bridge.toml " +
        "(from = \"old engine\", to = \"new engine\", ramp = 0-100)"));
    } else {
      UI.replace(box, data.workflows.map(workflowCard));
    }
    UI.replace(document.getElementById("dead-letters"), data.dead_letters.length
      ? data.dead_letters.map((d) => UI.el("li", { class: "error" },
        `${d.count} dead letter(s) of ${d.subscription} in ${d.outbox}`))
      : UI.el("li", { class: "muted" }, "none"));
  }, 2000);
})();
