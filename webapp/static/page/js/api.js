// The API client: every request goes through here, with the key (if any) as a Bearer header.
// The key lives in sessionStorage (this tab's browser session) and is never put in a URL.

const KEY_ITEM = "sessionizer.apiKey";

export const authMode = document.querySelector('meta[name="sessionizer-auth"]')?.content || "off";

export function getKey() {
  return sessionStorage.getItem(KEY_ITEM);
}

export function setKey(key) {
  sessionStorage.setItem(KEY_ITEM, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY_ITEM);
}

/** An answer that was not 2xx: status, the problem+json body and the headers. */
export class ApiError extends Error {
  constructor(status, problem, headers) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
    this.headers = headers;
  }
}

/** fetch() with the key; throws ApiError for anything but 2xx (a 401 also asks for a key). */
export async function request(path, { method = "GET", body, headers = {}, accept = "application/json", signal } = {}) {
  const h = new Headers(headers);
  h.set("Accept", accept);
  const key = getKey();
  if (key) h.set("Authorization", `Bearer ${key}`);
  let payload;
  if (body !== undefined) {
    h.set("Content-Type", "application/json");
    payload = JSON.stringify(body);
  }
  const resp = await fetch(path, { method, headers: h, body: payload, cache: "no-store", signal });
  if (!resp.ok) {
    let problem = {};
    try {
      problem = await resp.json();
    } catch {
      problem = { title: resp.statusText };
    }
    const err = new ApiError(resp.status, problem, resp.headers);
    if (resp.status === 401) window.dispatchEvent(new CustomEvent("sessionizer:need-key", { detail: err }));
    throw err;
  }
  return resp;
}

/** The JSON body (null for 204) and the headers. */
export async function requestJson(path, options) {
  const resp = await request(path, options);
  const body = resp.status === 204 ? null : await resp.json();
  return { body, headers: resp.headers, status: resp.status };
}

/** Seconds from a Retry-After header, or a fallback. */
export function retryAfter(headers, fallback = 2) {
  const v = Number.parseFloat(headers?.get("Retry-After") ?? "");
  return Number.isFinite(v) && v > 0 ? v : fallback;
}

/** A random Idempotency-Key (crypto.randomUUID needs a secure context; this does not). */
export function idempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Fetch with the key and save the body as a file (a plain link could not send the header). */
export async function download(path, accept, filename) {
  const resp = await request(path, { accept });
  const blob = await resp.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  return blob.size;
}
