// bridge ui: helpers every page shares. Data is always put in the page as text
// (textContent, attributes), never as HTML, so a payload cannot inject markup.
"use strict";

const UI = {};

// A DOM element: el("td", {class: "num"}, "3", otherNode). Strings become text nodes.
UI.el = function (tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  UI.append(node, children);
  return node;
};

// An SVG element, the same way.
UI.svg = function (tag, attrs, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined) node.setAttribute(key, String(value));
  }
  UI.append(node, children);
  return node;
};

UI.append = function (node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
};

UI.replace = function (node, ...children) {
  node.replaceChildren();
  UI.append(node, children);
};

// GET or POST JSON; a failure throws an Error with the server's message.
UI.api = async function (path, body) {
  const options = { credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    options.method = "POST";
    options.headers["content-type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  if (!response.ok) {
    throw new Error((data && data.error) || `${response.status} ${response.statusText}`);
  }
  return data;
};

UI.badge = (status, text) => UI.el("span", { class: `badge ${status}` }, text || status);

UI.time = function (iso) {
  if (!iso) return "";
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
};

UI.duration = function (seconds) {
  if (seconds === null || seconds === undefined) return "";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 120) return `${seconds.toFixed(seconds < 10 ? 2 : 1)} s`;
  if (seconds < 7200) return `${(seconds / 60).toFixed(1)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
};

UI.json = function (value) {
  if (value === undefined) return "";
  return JSON.stringify(value, null, 2);
};

UI.runLink = (id) => UI.el("a", { href: `/run?id=${encodeURIComponent(id)}` }, id);

// Call `load` now and every `ms` while the tab is visible; the header says how fresh the
// data is, and turns red while the server does not answer.
UI.poll = function (load, ms) {
  const live = document.getElementById("live");
  let timer = null;
  async function tick() {
    clearTimeout(timer);
    try {
      await load();
      if (live) {
        live.textContent = `live · updated ${new Date().toLocaleTimeString()}`;
        live.classList.remove("stale");
      }
    } catch (err) {
      if (live) {
        live.textContent = `not updated: ${err.message}`;
        live.classList.add("stale");
      }
    }
    timer = setTimeout(tick, document.hidden ? ms * 5 : ms);
  }
  document.addEventListener("visibilitychange", () => { if (!document.hidden) tick(); });
  tick();
  return tick;
};

// A confirmation in a <dialog>: resolves true when the user confirms.
UI.confirm = function (title, details) {
  return new Promise((resolve) => {
    const yes = UI.el("button", { class: "act", id: "confirm-yes", type: "button",
      onclick: () => dialog.close("yes") }, "Confirm");
    const no = UI.el("button", { class: "plain", type: "button",
      onclick: () => dialog.close("no") }, "Back");
    const dialog = UI.el("dialog", { id: "confirm" },
      UI.el("h3", {}, title), details, UI.el("menu", {}, no, yes));
    dialog.addEventListener("close", () => {
      resolve(dialog.returnValue === "yes");
      dialog.remove();
    });
    document.body.append(dialog);
    dialog.showModal();
  });
};

UI.flash = function (node, ok, text) {
  UI.replace(node, UI.el("div", { class: `flash ${ok ? "ok" : "bad"}` }, text));
};

// The footer: which engines this UI sees, and where (passwords are masked by the server).
UI.footer = async function () {
  const footer = document.getElementById("engines");
  if (!footer) return;
  try {
    const config = await UI.api("/api/config");
    UI.replace(footer, "engines: ", config.engines.map((e, i) =>
      [i ? " · " : "", UI.el("b", {}, e.name), ` ${e.backend} ${e.target}`]));
  } catch (err) {
    UI.replace(footer, UI.el("span", { class: "error" }, err.message));
  }
};

document.addEventListener("DOMContentLoaded", UI.footer);
