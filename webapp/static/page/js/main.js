// The page's entry point: a hash router (#/ and #/jobs/<id>) and the API key prompt.

import { authMode, forgetKey, getKey, setKey } from "./api.js";
import { renderHome } from "./home.js";
import { renderJob } from "./job.js";

const view = document.getElementById("view");
const dialog = document.getElementById("key-dialog");
let generation = 0;
let leaving = [];

/** What a view needs to know: is it still the one shown, and what to stop when it is left. */
function context() {
  const mine = ++generation;
  for (const stop of leaving) stop();
  leaving = [];
  return { current: () => mine === generation, onLeave: (fn) => leaving.push(fn) };
}

function route() {
  const ctx = context();
  const match = window.location.hash.match(/^#\/jobs\/([^/]+)$/);
  const shown = match ? renderJob(view, decodeURIComponent(match[1]), ctx) : renderHome(view, ctx);
  shown.catch((err) => {
    if (ctx.current() && err?.status !== 401) view.prepend(Object.assign(document.createElement("p"), { className: "error", textContent: String(err.message || err) }));
  });
}

function showKeyStatus() {
  document.getElementById("key-status").hidden = !getKey();
}

function askKey(reason) {
  if (dialog.open) return;
  document.getElementById("key-reason").textContent = reason;
  document.getElementById("key-input").value = "";
  dialog.showModal();
}

document.getElementById("key-form").addEventListener("submit", () => {
  const key = document.getElementById("key-input").value.trim();
  if (!key) return;
  setKey(key);
  showKeyStatus();
  route();
});

document.getElementById("key-forget").addEventListener("click", () => {
  forgetKey();
  showKeyStatus();
  if (authMode === "required") askKey("Key forgotten. Type a key to go on.");
  route();
});

window.addEventListener("sessionizer:need-key", (e) => {
  const detail = e.detail?.message || "";
  askKey(getKey() ? `The API refused this key (${detail}). Type another one.`
    : "This API needs a key. It is kept for this browser session only and sent as `Authorization: Bearer`, never in a URL.");
});

window.addEventListener("hashchange", route);
showKeyStatus();
if (authMode === "required" && !getKey()) {
  askKey("This API needs a key. It is kept for this browser session only and sent as `Authorization: Bearer`, never in a URL.");
  view.replaceChildren(Object.assign(document.createElement("p"), { className: "muted", textContent: "Waiting for an API key…" }));
} else {
  route();
}
