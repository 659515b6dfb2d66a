// The local hub page: poll the sections every 2 s; Restart/Pause POST to the Hub's Space endpoints.
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

async function control(action, space) {
  const token = sessionStorage.getItem(TOKEN_KEY) || "";
  if (tokenRequired && !token) {
    show(`Refused: this hub requires a token to ${action} ${space}. Enter it in the Token field above.`, "error");
    return;
  }
  const path = space.split("/").map(encodeURIComponent).join("/");
  // same-origin JSON: the hub refuses writes from other origins and bodies of other types
  const headers = {"Content-Type": "application/json", ...(token ? {Authorization: `Bearer ${token}`} : {})};
  const response = await fetch(`/api/spaces/${path}/${action}`, {method: "POST", headers, body: "{}"});
  if (!response.ok) {
    const reason = response.headers.get("X-Error-Message") || response.statusText;
    show(`Refused: ${action} ${space}: ${response.status} ${reason}`, "error");
    return;
  }
  const runtime = await response.json();
  show(`${action} ${space}: ${runtime.stage}`, "ok");
  refresh();
}

sections.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-action]");
  if (button) control(button.dataset.action, button.dataset.space).catch((error) => show(`${error}`, "error"));
});

for (const log of sections.querySelectorAll("pre.log")) log.scrollTop = log.scrollHeight;
setInterval(refresh, POLL_MS);
