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

export async function buildForm(form) {
  const doc = await loadSpec();
  const args = doc.components.schemas.JobArgs.properties;
  const method = form.elements.method;
  method.replaceChildren(...(args.method.enum || []).map((m) => el("option", { value: m }, m)));
  method.value = args.method.default || method.options[0]?.value;
  form.querySelector('[data-help="method"]').textContent = args.method.description || "";
  form.elements.users.placeholder = (args.users.example || []).join(", ");
  form.elements.users.title = args.users.description || "";
  // a week up to today's midnight (UTC) as a starting point
  const today = Math.floor(Date.now() / 86_400_000) * 86_400_000;
  if (!form.elements.start.value) form.elements.start.value = isoLocal(today - 7 * 86_400_000);
  if (!form.elements.end.value) form.elements.end.value = isoLocal(today);
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
    return el("label", { title: prop.description || "" }, `${name} `, input,
      el("span", { class: "hint" }, prop.description || ""),
      el("span", { class: "error", dataset: { error: `params.${name}` } }));
  });
  box.replaceChildren(...inputs);
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
