// The runs page: one list across engines, filtered in the query string, refreshed live.
"use strict";

(function () {
  const form = document.getElementById("filters");
  const params = new URLSearchParams(location.search);
  let page = Number(params.get("page") || 0);
  const FIELDS = ["status", "workflow", "engine", "search", "where"];

  // Select options that are not known yet (a type or engine from the URL) are added.
  function ensureOption(select, value) {
    if (value && ![...select.options].some((o) => o.value === value)) {
      select.append(UI.el("option", { value }, value));
    }
  }
  for (const name of FIELDS) {
    const field = form.elements[name];
    if (field.tagName === "SELECT") ensureOption(field, params.get(name));
    field.value = params.get(name) || "";
  }

  function query() {
    const q = new URLSearchParams();
    for (const name of FIELDS) {
      const value = form.elements[name].value.trim();
      if (value) q.set(name, value);
    }
    if (page) q.set("page", String(page));
    return q;
  }

  let refresh = null;
  function changed() {
    page = 0;
    const q = query();
    history.replaceState(null, "", q.toString() ? `/?${q}` : "/");
    refresh();
  }
  form.addEventListener("change", changed);
  form.addEventListener("submit", (e) => { e.preventDefault(); changed(); });
  let typing = null;
  form.addEventListener("input", (e) => {
    if (e.target.tagName !== "INPUT") return;
    clearTimeout(typing);
    typing = setTimeout(changed, 400);
  });

  function fillSelect(name, values) {
    const select = form.elements[name];
    for (const value of values) ensureOption(select, value);
  }

  function renderCounts(counts) {
    const box = document.getElementById("counts");
    const current = form.elements.status.value;
    const all = Object.values(counts).reduce((a, b) => a + b, 0);
    const chip = (status, label, n) => UI.el("button", {
      type: "button", class: current === status ? "on" : null, "data-status": status || "any",
      onclick: () => { form.elements.status.value = status; changed(); },
    }, `${label} `, UI.el("b", {}, String(n)));
    UI.replace(box, chip("", "all", all),
      Object.entries(counts).map(([status, n]) => chip(status, status.toLowerCase(), n)));
  }

  function renderRows(data) {
    const body = document.querySelector("#runs tbody");
    if (!data.runs.length) {
      UI.replace(body, UI.el("tr", {}, UI.el("td", { colspan: 7, class: "empty" },
        "no runs match these filters")));
      return;
    }
    UI.replace(body, data.runs.map((run) => UI.el("tr", { "data-id": run.id },
      UI.el("td", { class: "mono" }, UI.runLink(run.id)),
      UI.el("td", { class: "engine" }, run.engine),
      UI.el("td", {}, run.workflow),
      UI.el("td", {}, UI.badge(run.status, run.blocked ? `${run.status} (blocked)` : null)),
      UI.el("td", {}, UI.time(run.created)),
      UI.el("td", {}, UI.time(run.ended)),
      UI.el("td", {}, run.waiting_for || ""))));
  }

  function renderPager(data) {
    const pages = Math.max(1, Math.ceil(data.total / data.size));
    document.getElementById("page").textContent =
      `page ${data.page + 1} of ${pages} · ${data.total} run(s)` +
      (data.truncated ? ` · the newest ${data.window} per engine` : "");
    document.getElementById("prev").disabled = data.page === 0;
    document.getElementById("next").disabled = data.page + 1 >= pages;
  }

  function renderProblems(engines) {
    const box = document.getElementById("problems");
    UI.replace(box, engines.filter((e) => e.error).map((e) =>
      UI.el("div", { class: "flash bad" }, `engine ${e.name}: ${e.error}`)));
  }

  document.getElementById("prev").addEventListener("click", () => {
    page = Math.max(0, page - 1); refresh();
  });
  document.getElementById("next").addEventListener("click", () => { page += 1; refresh(); });

  refresh = UI.poll(async () => {
    let data;
    try {
      data = await UI.api(`/api/runs?${query()}`);
    } catch (err) {
      UI.flash(document.getElementById("problems"), false, err.message);  // a bad query, say
      throw err;
    }
    fillSelect("workflow", data.workflows);
    fillSelect("engine", data.engines.map((e) => e.name));
    renderCounts(data.counts);
    renderRows(data);
    renderPager(data);
    renderProblems(data.engines);
  }, 2000);
})();
