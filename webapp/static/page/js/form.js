// The submit form, built from /openapi.json: the methods, their parameters, their defaults and
// descriptions come from the API's own description, so the form cannot drift from it.

import { el } from "./format.js";

let spec = null;

async function loadSpec() {
  if (!spec) {
    const resp = await fetch("/openapi.json", { headers: { Accept: "application/json" } });
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    spec = await resp.json();
  }
  return spec;
}

function paramsSchema(doc, method) {
  const name = `${method.charAt(0).toUpperCase()}${method.slice(1)}Params`;
  return doc.components?.schemas?.[name] || { properties: {} };
}

function isoLocal(ms) {
  return new Date(ms).toISOString().slice(0, 16);
}

/** The API's descriptions in plain words: `code` as code, and no "3.16224e+07" (31,622,400). */
export function plain(text) {
  const readable = String(text ?? "").replace(/\d+(?:\.\d+)?e[+-]?\d+/gi, (m) => Number(m).toLocaleString("en"));
  return readable.split("`").map((part, i) => (i % 2 ? el("code", {}, part) : part));
}

function plainText(text) {
  return plain(text).map((p) => (typeof p === "string" ? p : p.textContent)).join("");
}

const DAY = 86_400_000;

/** The range presets, and a hint of where this key's jobs found events (their request ranges). */
async function rangeHelp(form, known) {
  const today = Math.floor(Date.now() / DAY) * DAY;
  const set = (start, end) => {
    form.elements.start.value = isoLocal(start);
    form.elements.end.value = isoLocal(end);
  };
  for (const button of form.querySelectorAll("[data-days]")) {
    button.addEventListener("click", () => set(today + DAY - Number(button.dataset.days) * DAY, today + DAY));
  }
  const hint = form.querySelector("#range-hint");
  const knownButton = form.querySelector("#range-known");
  if (known) {
    knownButton.hidden = false;
    knownButton.addEventListener("click", () => set(known.start, known.end));
    hint.textContent = `Your jobs found events from ${utcDay(known.start)} to ${utcDay(known.end)}.`;
  } else {
    hint.textContent = "No job of yours has found events yet: a job over a range without events finds no sessions.";
  }
  return today;
}

function utcDay(ms) {
  return new Date(ms).toISOString().slice(0, 10);
}

/** Where this key's finished jobs found events: the span of their ranges (null if none did). */
export async function knownRange(listJobs) {
  let jobs = [];
  try {
    jobs = await listJobs();
  } catch {
    return null;
  }
  const found = jobs.filter((j) => j.status === "succeeded" && (j.progress?.events_scanned ?? 0) > 0);
  if (!found.length) return null;
  const starts = found.map((j) => Date.parse(j.request.start)).filter(Number.isFinite);
  const ends = found.map((j) => Date.parse(j.request.end)).filter(Number.isFinite);
  return starts.length && ends.length ? { start: Math.min(...starts), end: Math.max(...ends) } : null;
}

export async function buildForm(form, known = null) {
  const doc = await loadSpec();
  const args = doc.components.schemas.JobArgs.properties;
  const method = form.elements.method;
  method.replaceChildren(...(args.method.enum || []).map((m) => el("option", { value: m }, m)));
  method.value = args.method.default || method.options[0]?.value;
  form.querySelector('[data-help="method"]').replaceChildren(...plain(args.method.description));
  form.elements.users.placeholder = (args.users.example || []).join(", ");
  form.elements.users.title = plainText(args.users.description);
  // the range where this key's jobs found events, else a week up to tomorrow's midnight (UTC)
  const today = await rangeHelp(form, known);
  if (!form.elements.start.value) form.elements.start.value = isoLocal(known ? known.start : today + DAY - 7 * DAY);
  if (!form.elements.end.value) form.elements.end.value = isoLocal(known ? known.end : today + DAY);
  const render = () => renderParams(form, paramsSchema(doc, method.value));
  method.addEventListener("change", render);
  render();
  form.dataset.ready = "true";
}

function renderParams(form, schema) {
  const box = form.querySelector("#params-fields");
  const inputs = Object.entries(schema.properties || {}).map(([name, prop]) => {
    const type = Array.isArray(prop.type) ? prop.type.find((t) => t !== "null") : prop.type;
    const input = el("input", { name: `param:${name}`, dataset: { param: name, type } });
    if (type === "boolean") {
      input.type = "checkbox";
      input.checked = Boolean(prop.default);
    } else {
      input.type = "number";
      input.step = type === "integer" ? "1" : "any";
      if (prop.minimum !== undefined) input.min = prop.minimum;
      if (prop.maximum !== undefined) input.max = prop.maximum;
      if (prop.default !== undefined && prop.default !== null) input.value = prop.default;
      else input.placeholder = "default";
    }
    input.dataset.default = JSON.stringify(prop.default ?? null);
    return el("label", { title: plainText(prop.description) }, `${name} `, input,
      el("span", { class: "hint" }, ...plain(prop.description)),
      el("span", { class: "error", dataset: { error: `params.${name}` } }));
  });
  box.replaceChildren(...inputs);
}

/** Fill the form with an earlier job's request ("edit and resubmit"). */
export function fillForm(form, request) {
  const f = form.elements;
  f.users.value = (request.users || []).join("\n");
  if (request.start) f.start.value = isoLocal(Date.parse(request.start));
  if (request.end) f.end.value = isoLocal(Date.parse(request.end));
  if (request.method && [...f.method.options].some((o) => o.value === request.method)) {
    f.method.value = request.method;
    f.method.dispatchEvent(new Event("change"));
  }
  f.group_by.value = (request.group_by || ["user"]).join(",");
  for (const input of form.querySelectorAll("[data-param]")) {
    const value = request.params?.[input.dataset.param];
    if (value === undefined || value === null) continue;
    if (input.type === "checkbox") input.checked = Boolean(value);
    else input.value = String(value);
  }
}

/** The job request: only parameters that differ from their default are sent. */
export function readForm(form) {
  const f = form.elements;
  const users = f.users.value.split(/[\n,]/).map((u) => u.trim()).filter(Boolean);
  const params = {};
  for (const input of form.querySelectorAll("[data-param]")) {
    const def = JSON.parse(input.dataset.default);
    let value;
    if (input.type === "checkbox") value = input.checked;
    else if (input.value === "") continue;
    else value = Number(input.value);
    if (value !== def) params[input.dataset.param] = value;
  }
  return {
    users,
    start: f.start.value,
    end: f.end.value,
    method: f.method.value,
    params,
    group_by: f.group_by.value.split(","),
  };
}

/** Put a 422's field messages beside their fields ({} clears them). */
export function showErrors(form, errors) {
  for (const box of form.querySelectorAll("[data-error]")) box.textContent = "";
  const flat = (obj, prefix) => Object.entries(obj).flatMap(([k, v]) => (
    Array.isArray(v) || typeof v !== "object" ? [[prefix + k, [].concat(v).join(" ")]] : flat(v, `${prefix}${k}.`)));
  for (const [name, msg] of flat(errors, "")) {
    const box = form.querySelector(`[data-error="${CSS.escape(name)}"]`)
      || form.querySelector(`[data-error="${CSS.escape(name.split(".")[0])}"]`);
    if (box) box.textContent += `${box.textContent ? " " : ""}${name.includes(".") && !box.dataset.error.includes(".") ? `${name}: ` : ""}${msg}`;
  }
}
