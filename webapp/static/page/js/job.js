// A job's view: live progress while it runs, then its summary, timeline, distribution and downloads.

import { download, requestJson, retryAfter } from "./api.js";
import { drawDistribution, showValues } from "./distribution.js";
import { duration, el, number, utc } from "./format.js";
import { loadSessions } from "./sessions.js";
import { SessionsTable } from "./table.js";
import { STYLES, Timeline, styleOf } from "./timeline.js";

const ACTIVE = new Set(["queued", "running"]);

export async function renderJob(root, id, ctx, state = new URLSearchParams()) {
  root.replaceChildren(document.getElementById("tpl-job").content.cloneNode(true));
  const $ = (sel) => root.querySelector(sel);
  const path = `/jobs/${encodeURIComponent(id)}`;
  $("#job-id").textContent = id;
  $("#job-edit").href = `#/?edit=${encodeURIComponent(id)}`;
  $("#job-cancel").addEventListener("click", async () => {
    await act(() => requestJson(`${path}/cancel`, { method: "POST" }), $);
  });
  $("#job-delete").addEventListener("click", async () => {
    if (!window.confirm(`Delete job ${id} and its sessions?`)) return;
    if (await act(() => requestJson(path, { method: "DELETE" }), $)) window.location.hash = "#/";
  });
  $("#dl-csv").addEventListener("click", () => save(path, "text/csv", `sessions-${id}.csv`, $));
  $("#dl-ndjson").addEventListener("click", () => save(path, "application/x-ndjson", `sessions-${id}.ndjson`, $));

  // Poll at the pace the API asks (Retry-After) until the job has finished.
  let job;
  for (;;) {
    let answer;
    try {
      answer = await requestJson(path);
    } catch (err) {
      showError($, err.status === 404 ? `No job ${id}: it was never issued, has expired, or was deleted.` : err.message);
      $("#job-progress").hidden = true;
      return;
    }
    if (!ctx.current()) return;
    job = answer.body;
    showJob($, job);
    if (!ACTIVE.has(job.status)) break;
    await new Promise((resolve) => setTimeout(resolve, retryAfter(answer.headers, 2) * 1000));
    if (!ctx.current()) return;
  }
  if (job.status === "succeeded") await showResult($, job, path, ctx, state);
}

async function act(call, $) {
  try {
    await call();
    return true;
  } catch (err) {
    showError($, err.message);
    return false;
  }
}

async function save(path, accept, filename, $) {
  const status = $("#dl-status");
  status.textContent = "preparing…";
  try {
    const size = await download(`${path}/sessions`, accept, filename);
    status.textContent = `${filename} (${number(size)} bytes)`;
  } catch (err) {
    status.textContent = `download failed: ${err.message}`;
  }
}

function showError($, message) {
  const box = $("#job-error");
  box.hidden = false;
  box.textContent = message;
}

function showJob($, job) {
  const r = job.request || {};
  const p = job.progress || {};
  const status = $("#job-status");
  status.textContent = job.status;
  status.className = `status ${job.status}`;
  const params = Object.entries(r.params || {}).map(([k, v]) => `${k}=${v}`).join(", ");
  $("#job-request").textContent = `${(r.users || []).length} users (${(r.users || []).slice(0, 5).join(", ")}`
    + `${(r.users || []).length > 5 ? ", …" : ""}), ${utc(Date.parse(r.start))} → ${utc(Date.parse(r.end))} UTC, `
    + `${r.method} (${params}), per ${(r.group_by || []).join(" and ")}`;
  const bar = $("#job-progress-bar");
  bar.max = Math.max(1, p.users_total || 0);
  bar.value = p.users_done || 0;
  const since = job.started_at || job.submitted_at;
  const until = job.finished_at ? Date.parse(job.finished_at) : Date.now();
  $("#job-progress-text").textContent = `${number(p.users_done)} of ${number(p.users_total)} users, `
    + `${number(p.events_scanned)} events scanned (${number(p.events_from_source ?? 0)} from the source), `
    + `${duration((until - Date.parse(since)) / 1000)}`;
  $("#job-progress").dataset.usersDone = String(p.users_done ?? 0);
  $("#job-cancel").hidden = !ACTIVE.has(job.status);
  if (job.error) showError($, `${job.status}: ${job.error.message} (${job.error.type})`);
}

/** Put the view's state in the address (replaceState: no history entry, no re-render). */
function keepState(id, state) {
  const query = new URLSearchParams(Object.entries(state).filter(([, v]) => v)).toString();
  const hash = `#/jobs/${encodeURIComponent(id)}${query ? `?${query}` : ""}`;
  if (window.location.hash !== hash) window.history.replaceState(null, "", hash);
}

async function showResult($, job, path, ctx, state) {
  $("#result").hidden = false;
  // The stats come with a one-session page; the sessions themselves are streamed as NDJSON.
  const { body: first } = await requestJson(`${path}/sessions?limit=1`);
  const stats = first.stats || {};
  const summary = $("#summary");
  const item = (label, value) => [el("div", {}, el("dt", {}, label), el("dd", { dataset: { stat: label } }, value))];
  const fill = (median) => summary.replaceChildren(
    ...item("users", number(stats.users)),
    ...item("events", number(stats.events)),
    ...item("sessions", number(stats.sessions)),
    ...item("median duration", median),
    ...item("invalid events", number(stats.invalid_events)),
    ...item("noise events", number(stats.noise_events)),
  );
  fill("loading…");
  if (!stats.sessions) { // a typo in a user name, or a range without events: say so, not just "0"
    showError($, stats.events ? "No sessions: the events read formed none (see the noise and invalid counts)."
      : "No sessions: no event of these users in this range. Check the user names, or try another range "
      + "(the form's range buttons help).");
    $("#job-error").classList.add("warn");
  }
  const info = $("#tl-info"); // held: the view may be replaced while sessions load
  info.textContent = "loading sessions…";
  $("#timeline-panel").hidden = false;
  const table = await loadSessions(job.id, (n) => {
    info.textContent = `loading sessions… ${number(n)}`;
  });
  performance.mark("sessionizer:sessions-loaded");
  if (!ctx.current()) return;
  fill(duration(table.median("duration")));
  summary.dataset.sessions = String(table.n);
  const canvas = $("#timeline");
  const timeline = new Timeline(canvas, $("#tooltip"), table, {
    start: Date.parse(job.request.start), end: Date.parse(job.request.end),
  }, $("#timeline-axis"));
  performance.mark("sessionizer:timeline-drawn");
  ctx.onLeave(() => timeline.destroy());
  const from = Date.parse(state.get("from") ?? "");
  const to = Date.parse(state.get("to") ?? "");
  if (Number.isFinite(from) && Number.isFinite(to) && to > from) timeline.setView(from, to); // a kept zoom
  const view = { from: null, to: null, user: state.get("user") || null };
  let keeping = null;
  canvas.addEventListener("drawn", () => {
    info.textContent = timeline.describe();
    clearTimeout(keeping);
    keeping = setTimeout(() => { // the zoom, in the address: the whole range is said by nothing
      if (!ctx.current()) return;
      const whole = timeline.view[0] <= timeline.extent[0] && timeline.view[1] >= timeline.extent[1];
      view.from = whole ? null : new Date(timeline.view[0]).toISOString();
      view.to = whole ? null : new Date(timeline.view[1]).toISOString();
      keepState(job.id, view);
    }, 250);
  });
  info.textContent = timeline.describe();
  $("#tl-zoom-in").addEventListener("click", () => timeline.zoom(0.5));
  $("#tl-zoom-out").addEventListener("click", () => timeline.zoom(2));
  $("#tl-reset").addEventListener("click", () => timeline.reset());
  legend($("#legend"), table);

  $("#table-panel").hidden = false;
  const sessionsTable = new SessionsTable($("#table-panel"), table, timeline, (user) => {
    view.user = user;
    keepState(job.id, view);
  });
  const lane = view.user ? table.users.values.indexOf(view.user) : -1;
  if (lane >= 0) sessionsTable.filter(lane); // a kept filter

  $("#dist-panel").hidden = false;
  const kind = $("#dist-kind");
  const dist = () => drawDistribution($("#distribution"), table, kind.value);
  kind.addEventListener("change", dist);
  dist();
  showValues($("#distribution"), $("#dist-value"));
  const resized = new ResizeObserver(() => dist()); // the chart follows the page's width
  resized.observe($("#dist-panel"));
  ctx.onLeave(() => resized.disconnect());
}

/** A swatch of style s: its colour, and its pattern of columns as the timeline draws it. */
export function swatch(s) {
  const { colour, pattern } = styleOf(s);
  const node = el("span", { class: "swatch" });
  node.style.backgroundColor = colour; // CSSOM, allowed by the page's CSP
  if (pattern[0] !== pattern[1]) {
    node.style.backgroundImage = `repeating-linear-gradient(90deg, transparent 0 ${pattern[0]}px, #fff ${pattern[0]}px ${pattern[1]}px)`;
  }
  return node;
}

function legend(box, table) {
  const names = table.instances.values;
  const shown = names.slice(0, 48).map((name, i) => el("span", { class: "chip" }, swatch(i % STYLES), name));
  if (names.length > 48) shown.push(el("span", { class: "muted" }, `and ${number(names.length - 48)} more instances`));
  if (names.length > STYLES) {
    shown.push(el("span", { class: "muted" }, `${number(names.length)} instances: styles repeat every ${STYLES}; the tooltip names each`));
  }
  box.replaceChildren(...shown);
}
