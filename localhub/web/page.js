// The local hub page: poll the sections every 2 s; Restart/Pause POST to the Hub's Space endpoints;
// a review queue label button POSTs the label to /api/localhub/review/<id>.
"use strict";
const POLL_MS = 2000;
const TOKEN_KEY = "localhub-token";
const sections = document.getElementById("sections");
const message = document.getElementById("message");
const updated = document.getElementById("updated");
const tokenInput = document.getElementById("token");
const tokenRequired = document.body.dataset.tokenRequired === "true";
let shownHtml = null;

if (tokenInput) {
  tokenInput.value = sessionStorage.getItem(TOKEN_KEY) || "";
  tokenInput.addEventListener("input", () => sessionStorage.setItem(TOKEN_KEY, tokenInput.value.trim()));
}

function show(text, kind) {
  message.textContent = text;  // text, never HTML: server messages can hold anything
  message.className = kind;
}

async function refresh() {
  try {
    const response = await fetch("/localhub/sections", {cache: "no-store"});
    if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
    const html = await response.text();
    if (html !== shownHtml) {  // unchanged: keep the DOM, so open <details> and scroll positions stay
      sections.innerHTML = html;
      shownHtml = html;
      for (const log of sections.querySelectorAll("pre.log")) log.scrollTop = log.scrollHeight;  // newest lines
    }
    updated.textContent = `updated ${new Date().toISOString().slice(11, 19)} UTC`;  // the page's times are all UTC
  } catch (error) {
    updated.textContent = `hub unreachable (${error.message}); retrying`;
  }
}

function writeHeaders(what) {
  const token = sessionStorage.getItem(TOKEN_KEY) || "";
  if (tokenRequired && !token) {
    show(`Refused: this hub requires a token to ${what}. Enter it in the Token field above.`, "error");
    return null;
  }
  // same-origin JSON: the hub refuses writes from other origins and bodies of other types
  return {"Content-Type": "application/json", ...(token ? {Authorization: `Bearer ${token}`} : {})};
}

async function post(what, url, body) {
  const headers = writeHeaders(what);
  if (!headers) return null;
  const response = await fetch(url, {method: "POST", headers, body: JSON.stringify(body)});
  if (!response.ok) {
    const reason = response.headers.get("X-Error-Message") || response.statusText;
    show(`Refused: ${what}: ${response.status} ${reason}`, "error");
    return null;
  }
  return response.json();
}

async function control(action, space) {
  const path = space.split("/").map(encodeURIComponent).join("/");
  const runtime = await post(`${action} ${space}`, `/api/spaces/${path}/${action}`, {});
  if (!runtime) return;
  show(`${action} ${space}: ${runtime.stage}`, "ok");
  refresh();
}

async function review(id, label) {
  const item = await post(`label item ${id}`, `/api/localhub/review/${encodeURIComponent(id)}`, {label});
  if (!item) return;
  show(`item ${item.id}: ${item.confirmed ? "confirmed" : "labelled"} ${item.corrected_label}`, "ok");
  refresh();
}

sections.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-action]");
  if (button) control(button.dataset.action, button.dataset.space).catch((error) => show(`${error}`, "error"));
  const label = event.target.closest("button[data-review]");
  if (label) review(label.dataset.review, label.dataset.label).catch((error) => show(`${error}`, "error"));
});

for (const log of sections.querySelectorAll("pre.log")) log.scrollTop = log.scrollHeight;
setInterval(refresh, POLL_MS);
