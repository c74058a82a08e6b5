// Sessions as columns (typed arrays + string dictionaries), read by streaming NDJSON:
// 100,000 sessions are parsed line by line as they arrive, never as one giant JSON document.

import { request } from "./api.js";

class Dict {
  constructor() {
    this.values = [];
    this.index = new Map();
  }
  id(value) {
    let i = this.index.get(value);
    if (i === undefined) {
      i = this.values.length;
      this.values.push(value);
      this.index.set(value, i);
    }
    return i;
  }
}

function grow(array, size) {
  const out = new array.constructor(size);
  out.set(array);
  return out;
}

const COLUMNS = {
  start: Float64Array, end: Float64Array, duration: Float64Array, lane: Uint32Array, instance: Uint32Array,
  events: Uint32Array, entry: Uint32Array, exit: Uint32Array, reason: Int32Array, truncated: Uint8Array,
  active: Float64Array, distinct: Int32Array, engaged: Int8Array,
};

/** One row per session: numbers in typed arrays, strings as indices into dictionaries. */
export class SessionTable {
  constructor() {
    this.n = 0;
    this.capacity = 1024;
    for (const [name, T] of Object.entries(COLUMNS)) this[name] = new T(this.capacity);
    this.users = new Dict();
    this.instances = new Dict();
    this.screens = new Dict();
    this.reasons = new Dict();
    this.ids = []; // session_id of each row
  }

  add(s) {
    if (this.n === this.capacity) {
      this.capacity *= 2;
      for (const name of Object.keys(COLUMNS)) this[name] = grow(this[name], this.capacity);
    }
    const i = this.n++;
    this.start[i] = Date.parse(s.start);
    this.end[i] = Date.parse(s.end);
    this.duration[i] = Number.isFinite(s.duration_s) ? s.duration_s : (this.end[i] - this.start[i]) / 1000;
    this.lane[i] = this.users.id(s.user);
    this.instance[i] = this.instances.id(s.instance ?? "");
    this.events[i] = s.events ?? 0;
    this.entry[i] = this.screens.id(s.entry_screen ?? "");
    this.exit[i] = this.screens.id(s.exit_screen ?? "");
    // split_reason: why the session ended, when the API gives it
    this.reason[i] = s.split_reason == null ? -1 : this.reasons.id(String(s.split_reason));
    this.truncated[i] = (s.truncated_start ? 1 : 0) | (s.truncated_end ? 2 : 0);
    // the analytics fields (-1 / NaN: a job from before they existed)
    this.active[i] = Number.isFinite(s.active_s) ? s.active_s : NaN;
    this.distinct[i] = Number.isInteger(s.screens) ? s.screens : -1;
    this.engaged[i] = s.engaged == null ? -1 : s.engaged ? 1 : 0;
    this.ids[i] = s.session_id ?? null;
  }

  /** Plain object of session i, for the tooltip. */
  row(i) {
    return {
      user: this.users.values[this.lane[i]],
      instance: this.instances.values[this.instance[i]],
      start: this.start[i],
      end: this.end[i],
      duration_s: this.duration[i],
      events: this.events[i],
      entry_screen: this.screens.values[this.entry[i]],
      exit_screen: this.screens.values[this.exit[i]],
      split_reason: this.reason[i] < 0 ? null : this.reasons.values[this.reason[i]],
      truncated_start: Boolean(this.truncated[i] & 1),
      truncated_end: Boolean(this.truncated[i] & 2),
      session_id: this.ids[i],
      screens: this.distinct[i] < 0 ? null : this.distinct[i],
      engaged: this.engaged[i] < 0 ? null : this.engaged[i] === 1,
      active_s: Number.isNaN(this.active[i]) ? null : this.active[i],
    };
  }

  median(column) {
    if (!this.n) return NaN;
    const sorted = this[column].slice(0, this.n).sort();
    const mid = this.n >> 1;
    return this.n % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  }
}

/** Stream a job's sessions (NDJSON) into a SessionTable; onProgress(count) as batches arrive. */
export async function loadSessions(jobId, onProgress = () => {}, signal) {
  const resp = await request(`/jobs/${encodeURIComponent(jobId)}/sessions`, { accept: "application/x-ndjson", signal });
  const table = new SessionTable();
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let rest = "";
  let told = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    const lines = (rest + value).split("\n");
    rest = lines.pop();
    for (const line of lines) if (line) table.add(JSON.parse(line));
    if (performance.now() - told > 100) { // the stream may come a line at a time: tell 10 times a second
      told = performance.now();
      onProgress(table.n);
    }
  }
  if (rest.trim()) table.add(JSON.parse(rest));
  onProgress(table.n);
  return table;
}
