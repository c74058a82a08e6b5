// The home view: the caller's jobs (newest first) and the submit form.

import { ApiError, idempotencyKey, requestJson, retryAfter } from "./api.js";
import { age, el, number, utc } from "./format.js";
import { buildForm, fillForm, knownRange, readForm, showErrors } from "./form.js";

const ACTIVE = new Set(["queued", "running"]);

export async function renderHome(root, ctx, state = new URLSearchParams()) {
  root.replaceChildren(document.getElementById("tpl-home").content.cloneNode(true));
  const form = root.querySelector("#submit-form");
  const list = new JobList(root, ctx);
  const edit = state.get("edit");
  knownRange(async () => (await requestJson("/jobs?limit=50&status=succeeded")).body.jobs)
    .then((known) => buildForm(form, known))
    .then(async () => {
      if (!edit || !ctx.current()) return;
      // "edit and resubmit": the form starts from that job's request
      const { body: job } = await requestJson(`/jobs/${encodeURIComponent(edit)}`);
      if (!ctx.current()) return;
      fillForm(form, job.request || {});
      root.querySelector("#form-title").textContent = `New job, from job ${job.id}`;
      form.dataset.editing = job.id;
      form.scrollIntoView();
    })
    .catch((err) => {
      root.querySelector("#submit-error").textContent = `Could not prepare the form: ${err.message}`;
    });
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    submit(form, root).catch(() => {});
  });
  await list.load();
}

async function submit(form, root) {
  const errorBox = root.querySelector("#submit-error");
  const button = form.querySelector("button[type=submit]");
  showErrors(form, {});
  errorBox.textContent = "";
  const body = readForm(form);
  button.disabled = true;
  try {
    const { body: job } = await requestJson("/jobs", {
      method: "POST", body, headers: { "Idempotency-Key": idempotencyKey() },
    });
    window.location.hash = `#/jobs/${encodeURIComponent(job.id)}`;
  } catch (err) {
    if (err instanceof ApiError) {
      showErrors(form, err.problem.errors || {});
      errorBox.textContent = `${err.status}: ${err.message}`;
    } else {
      errorBox.textContent = String(err);
    }
    throw err;
  } finally {
    button.disabled = false;
  }
}

class JobList {
  constructor(root, ctx) {
    this.body = root.querySelector("#jobs-body");
    this.empty = root.querySelector("#jobs-empty");
    this.more = root.querySelector("#jobs-more");
    this.ctx = ctx;
    this.cursor = null;
    this.timer = null;
    root.querySelector("#jobs-refresh").addEventListener("click", () => this.load());
    this.more.addEventListener("click", () => this.load(this.cursor));
    ctx.onLeave(() => clearTimeout(this.timer));
  }

  /** The first page (or the next one after cursor); refreshed while a job is queued or running. */
  async load(cursor = null) {
    clearTimeout(this.timer);
    const query = new URLSearchParams({ limit: "20" });
    if (cursor) query.set("cursor", cursor);
    let answer;
    try {
      answer = await requestJson(`/jobs?${query}`);
    } catch (err) {
      this.empty.hidden = false;
      this.empty.textContent = `Could not list jobs: ${err.message}`;
      return;
    }
    if (!this.ctx.current()) return;
    const { jobs, next_cursor: next } = answer.body;
    if (!cursor) this.body.replaceChildren();
    for (const job of jobs) this.body.append(this.row(job));
    this.cursor = next;
    this.more.hidden = !next;
    this.empty.hidden = this.body.children.length > 0;
    this.empty.textContent = "No jobs yet.";
    if (!cursor && jobs.some((j) => ACTIVE.has(j.status))) {
      this.timer = setTimeout(() => this.load(), retryAfter(answer.headers, 2) * 1000);
    }
  }

  row(job) {
    const p = job.progress || {};
    const r = job.request || {};
    const users = r.users || [];
    const active = ACTIVE.has(job.status);
    const href = `#/jobs/${encodeURIComponent(job.id)}`;
    const action = (label, fn, cls = "small") => el("button", { type: "button", class: cls, onclick: fn }, label);
    // data-label: the column's name, shown beside each value where the table is laid out as cards (phones)
    return el("tr", { dataset: { jobId: job.id, status: job.status } },
      el("td", { title: job.submitted_at, dataset: { label: "Submitted" } }, age(job.submitted_at)),
      el("td", { dataset: { label: "Status" } }, el("span", { class: `status ${job.status}` }, job.status)),
      el("td", { dataset: { label: "Progress" } },
        el("progress", { max: Math.max(1, p.users_total || 0), value: p.users_done || 0 }),
        ` ${number(p.users_done)}/${number(p.users_total)} users, ${number(p.events_scanned)} events`
        + ` (${number(p.events_from_source ?? 0)} from the source)`),
      el("td", { title: users.join(", "), dataset: { label: "Users" } },
        users.slice(0, 3).join(", ") + (users.length > 3 ? ` +${users.length - 3}` : "")),
      el("td", { dataset: { label: "Range" } }, `${utc(Date.parse(r.start), false)} → ${utc(Date.parse(r.end), false)}`),
      el("td", { dataset: { label: "Method" } }, r.method || ""),
      el("td", { class: "row-actions" },
        el("a", { href, class: "open" }, "open"),
        active ? action("cancel", () => this.act(job.id, "cancel")) : null,
        action("delete", () => this.act(job.id, "delete"), "small danger")),
    );
  }

  async act(id, what) {
    if (what === "delete" && !window.confirm(`Delete job ${id} and its sessions?`)) return;
    const path = `/jobs/${encodeURIComponent(id)}`;
    try {
      if (what === "cancel") await requestJson(`${path}/cancel`, { method: "POST" });
      else await requestJson(path, { method: "DELETE" });
    } catch (err) {
      window.alert(`Could not ${what} job ${id}: ${err.message}`);
    }
    await this.load();
  }
}
