// The page's entry point: a hash router (#/ and #/jobs/<id>) and the API key prompt.

import { authMode, forgetKey, getKey, retryAfter, setKey } from "./api.js";
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
  // #/jobs/<id>, with the view's state after a "?" (from, to, user): kept by reloads and links
  const match = window.location.hash.match(/^#\/jobs\/([^/?]+)(?:\?(.*))?$/);
  const shown = match ? renderJob(view, decodeURIComponent(match[1]), ctx, new URLSearchParams(match[2] || ""))
    : renderHome(view, ctx, new URLSearchParams(window.location.hash.split("?")[1] || ""));
  shown.catch((err) => {
    if (ctx.current() && err?.status !== 401) view.prepend(Object.assign(document.createElement("p"), { className: "error", textContent: String(err.message || err) }));
  });
}

function showKeyStatus() {
  document.getElementById("key-status").hidden = !getKey();
}

const NEED_KEY = "This API needs a key.";
const keyInput = document.getElementById("key-input");
const keyError = document.getElementById("key-error");
const keyUse = document.getElementById("key-use");
let lockTimer = null;

function askKey(reason) {
  document.getElementById("key-reason").textContent = reason;
  if (dialog.open) return;
  keyInput.value = "";
  if (!lockTimer) keyError.hidden = true;
  dialog.showModal();
}

/** Without a key (Cancel, Escape, or a refused key): say so, and offer the dialog again. */
function showNoKey() {
  const again = Object.assign(document.createElement("button"), { type: "button", className: "primary", id: "key-again", textContent: "Enter an API key" });
  again.addEventListener("click", () => askKey(NEED_KEY));
  const box = Object.assign(document.createElement("section"), { className: "panel", id: "no-key" });
  box.append(Object.assign(document.createElement("p"), { textContent: "This API needs a key to list and submit jobs. No key is set." }), again);
  view.replaceChildren(box);
}

/** Ask the API whether a key is known, without storing it: a one-job listing with it. */
async function checkKey(key) {
  const resp = await fetch("/jobs?limit=1", {
    headers: { Accept: "application/json", Authorization: `Bearer ${key}` }, cache: "no-store",
  });
  if (resp.ok) return { ok: true };
  let problem = {};
  try {
    problem = await resp.json();
  } catch {
    // not JSON: the status says enough
  }
  return { ok: false, status: resp.status, message: problem.detail || problem.title || `HTTP ${resp.status}`,
    retry: retryAfter(resp.headers, 1) };
}

function keyRefused(text) {
  keyError.textContent = text;
  keyError.hidden = false;
  keyInput.select();
}

/** Too many wrong keys from this address: no key is tried before the API's retry time. */
function lockOut(message, seconds) {
  const until = Date.now() + seconds * 1000;
  const clock = new Date(until).toISOString().slice(11, 19);
  clearInterval(lockTimer);
  const tick = () => {
    const left = Math.ceil((until - Date.now()) / 1000);
    if (left <= 0) {
      clearInterval(lockTimer);
      lockTimer = null;
      keyUse.disabled = false;
      keyError.textContent = "You can try a key again now.";
      return;
    }
    keyUse.disabled = true;
    keyError.textContent = `${message} Try again in ${left} s (at ${clock} UTC).`;
    keyError.dataset.retryAt = String(until);
  };
  keyError.hidden = false;
  tick();
  lockTimer = setInterval(tick, 1000);
}

document.getElementById("key-form").addEventListener("submit", async (e) => {
  e.preventDefault(); // the dialog stays open until the key has been checked
  const key = keyInput.value.trim();
  if (!key || keyUse.disabled) return;
  keyUse.disabled = true;
  keyError.hidden = false;
  keyError.textContent = "Checking the key…";
  let answer;
  try {
    answer = await checkKey(key);
  } catch (err) {
    answer = { ok: false, status: 0, message: `The API could not be reached (${err.message}).` };
  }
  keyUse.disabled = false;
  if (answer.ok) {
    setKey(key);
    keyError.hidden = true;
    dialog.close("stored");
    showKeyStatus();
    route();
  } else if (answer.status === 429) {
    lockOut(answer.message, answer.retry);
  } else if (answer.status === 401 || answer.status === 403) {
    keyRefused(`The API refused this key: ${answer.message} Check it and type it again.`);
  } else {
    keyRefused(answer.status ? `The key could not be checked: ${answer.status} ${answer.message}` : answer.message);
  }
});

document.getElementById("key-cancel").addEventListener("click", () => dialog.close("cancel"));

// Escape closes the dialog too (its "cancel" event); either way, without a key the view says so.
dialog.addEventListener("close", () => {
  if (dialog.returnValue !== "stored" && !getKey() && authMode === "required") showNoKey();
  dialog.returnValue = "";
});

document.getElementById("key-forget").addEventListener("click", () => {
  forgetKey();
  showKeyStatus();
  if (authMode === "required") {
    showNoKey();
    askKey("Key forgotten. Type a key to go on.");
  } else {
    route();
  }
});

window.addEventListener("sessionizer:need-key", (e) => {
  const detail = e.detail?.message || "";
  const refused = getKey();
  forgetKey(); // a refused key is not kept, nor shown as set
  showKeyStatus();
  if (authMode === "required") showNoKey();
  askKey(refused ? `The API refused the stored key (${detail}). Type another one.` : NEED_KEY);
});

window.addEventListener("hashchange", () => {
  if (authMode === "required" && !getKey()) showNoKey();
  else route();
});
showKeyStatus();
if (authMode === "required" && !getKey()) {
  showNoKey();
  askKey(NEED_KEY);
} else {
  route();
}
