// The sessions as a table: sorted by any column, filtered by user, linked to the timeline both ways.
// Virtualised: only the rows in sight (and a few around them) are in the DOM, so 100,000 sessions
// cost what 40 do; the scroll height is that of every row.

import { duration, el, number, utc } from "./format.js";

const ROW_H = 26; // px, as .st-row's height in page.css
const AROUND = 8; // rows drawn beyond the visible ones, above and below

const COLUMNS = [
  { key: "user", label: "user" },
  { key: "instance", label: "instance" },
  { key: "start", label: "start (UTC)" },
  { key: "end", label: "end (UTC)" },
  { key: "duration", label: "duration" },
  { key: "events", label: "events" },
  { key: "screens", label: "screens" },
  { key: "reason", label: "ended" },
  { key: "active", label: "active" },
  { key: "engaged", label: "engaged" },
];

/** Each dictionary value's rank in sorted order, so strings sort as integers. */
function ranks(values) {
  const order = values.map((v, i) => i).sort((a, b) => (values[a] < values[b] ? -1 : values[a] > values[b] ? 1 : 0));
  const rank = new Uint32Array(values.length);
  order.forEach((i, r) => { rank[i] = r; });
  return rank;
}

export class SessionsTable {
  /**
   * @param {HTMLElement} root the panel (holds #st-user, #st-count, #st-scroll, #st-rows)
   * @param {import("./sessions.js").SessionTable} table
   * @param {import("./timeline.js").Timeline} timeline
   * @param {(user: string|null) => void} onFilter told when the user filter changes
   */
  constructor(root, table, timeline, onFilter = () => {}) {
    this.table = table;
    this.timeline = timeline;
    this.onFilter = onFilter;
    this.scroll = root.querySelector("#st-scroll");
    this.rows = root.querySelector("#st-rows");
    this.count = root.querySelector("#st-count");
    this.userSelect = root.querySelector("#st-user");
    this.head = root.querySelector("#st-head");
    this.sortKey = "start";
    this.desc = false;
    this.selected = -1; // a row of the SessionTable
    this.position = new Uint32Array(table.n); // timeline position of each row
    timeline.order.forEach((i, k) => { this.position[i] = k; });
    this.userRank = ranks(table.users.values);
    this.instanceRank = ranks(table.instances.values);
    this.screenRank = ranks(table.screens.values);
    this.reasonRank = ranks(table.reasons.values);
    this.buildHead();
    this.userSelect.replaceChildren(el("option", { value: "" }, `all ${number(table.users.values.length)} users`),
      ...table.users.values.map((u, i) => el("option", { value: String(i) }, u)));
    this.userSelect.addEventListener("change", () => {
      this.filter(this.userSelect.value === "" ? -1 : Number(this.userSelect.value));
      this.onFilter(this.userSelect.value === "" ? null : table.users.values[Number(this.userSelect.value)]);
    });
    this.scroll.addEventListener("scroll", () => this.render(), { passive: true });
    this.rows.addEventListener("click", (e) => {
      const row = e.target.closest("[data-row]");
      if (row) this.pick(Number(row.dataset.row), true);
    });
    this.timeline.canvas.addEventListener("select", (e) => this.pick(e.detail.row, false));
    this.lane = -1;
    this.filter(-1);
    root.sessionsTable = this; // for tests: the panel knows its table
  }

  buildHead() {
    this.head.replaceChildren(...COLUMNS.map(({ key, label }) => el("button", {
      type: "button", class: "st-sort", dataset: { key }, onclick: () => this.sortBy(key),
    }, label)));
  }

  /** Only one user's sessions (lane), or all of them (-1). */
  filter(lane) {
    this.lane = lane;
    const t = this.table;
    if (lane < 0) {
      this.index = new Uint32Array(t.n);
      for (let i = 0; i < t.n; i++) this.index[i] = i;
    } else {
      const from = this.timeline.laneFrom[lane];
      const to = this.timeline.laneTo[lane];
      this.index = Uint32Array.from(this.timeline.order.subarray(from, to));
    }
    this.userSelect.value = lane < 0 ? "" : String(lane);
    this.sort();
  }

  sortBy(key) {
    this.desc = this.sortKey === key ? !this.desc : false;
    this.sortKey = key;
    this.sort();
  }

  /** The sort key of row i as a number (strings by their rank), ties broken by start. */
  keyOf(key) {
    const t = this.table;
    switch (key) {
      case "user": return (i) => this.userRank[t.lane[i]];
      case "instance": return (i) => this.instanceRank[t.instance[i]];
      case "end": return (i) => t.end[i];
      case "duration": return (i) => t.duration[i];
      case "events": return (i) => t.events[i];
      case "screens": return (i) => this.screenRank[t.entry[i]] * 65536 + this.screenRank[t.exit[i]];
      case "reason": return (i) => (t.reason[i] < 0 ? -1 : this.reasonRank[t.reason[i]]);
      case "active": return (i) => (Number.isNaN(t.active[i]) ? -1 : t.active[i]);
      case "engaged": return (i) => t.engaged[i];
      default: return (i) => t.start[i];
    }
  }

  sort() {
    const key = this.keyOf(this.sortKey);
    const start = this.table.start;
    const sign = this.desc ? -1 : 1;
    const keys = new Float64Array(this.table.n);
    for (const i of this.index) keys[i] = key(i);
    this.index.sort((a, b) => sign * (keys[a] - keys[b]) || start[a] - start[b] || a - b);
    for (const b of this.head.children) {
      const on = b.dataset.key === this.sortKey;
      b.setAttribute("aria-sort", on ? (this.desc ? "descending" : "ascending") : "none");
      b.dataset.arrow = on ? (this.desc ? "↓" : "↑") : "";
    }
    this.rows.style.height = `${this.index.length * ROW_H}px`;
    this.count.textContent = `${number(this.index.length)} of ${number(this.table.n)} sessions`;
    this.scroll.dataset.rows = String(this.index.length);
    this.drawn = null;
    this.render();
  }

  /** The rows in sight, absolutely placed in a box as tall as all of them. */
  render() {
    const first = Math.max(0, Math.floor(this.scroll.scrollTop / ROW_H) - AROUND); // (the sticky head: within AROUND)
    const last = Math.min(this.index.length, Math.ceil((this.scroll.scrollTop + this.scroll.clientHeight) / ROW_H) + AROUND);
    if (this.drawn && this.drawn[0] === first && this.drawn[1] === last) return;
    this.drawn = [first, last];
    const t = this.table;
    const nodes = [];
    for (let p = first; p < last; p++) {
      const i = this.index[p];
      const s = t.row(i);
      const row = el("div", { class: `st-row${i === this.selected ? " selected" : ""}`, role: "row", dataset: { row: String(i) } },
        el("span", {}, s.user), el("span", {}, s.instance), el("span", {}, utc(s.start)), el("span", {}, utc(s.end)),
        el("span", { class: "num" }, duration(s.duration_s)), el("span", { class: "num" }, number(s.events)),
        el("span", {}, `${s.entry_screen} → ${s.exit_screen}`), el("span", {}, s.split_reason || ""),
        el("span", { class: "num" }, s.active_s == null ? "" : duration(s.active_s)),
        el("span", {}, s.engaged == null ? "" : s.engaged ? "yes" : "no"));
      row.style.top = `${p * ROW_H}px`;
      nodes.push(row);
    }
    this.rows.replaceChildren(...nodes);
  }

  /** Select row i: in the table (scrolled to it) and, from a click, in the timeline too. */
  pick(i, fromTable) {
    if (i < 0 || i >= this.table.n) return;
    this.selected = i;
    let p = this.index.indexOf(i);
    if (p < 0) { // another user's session: show all users again
      this.filter(-1);
      this.onFilter(null);
      p = this.index.indexOf(i);
    }
    const top = p * ROW_H;
    if (top < this.scroll.scrollTop || top + ROW_H > this.scroll.scrollTop + this.scroll.clientHeight) {
      this.scroll.scrollTop = Math.max(0, top - this.scroll.clientHeight / 2);
    }
    this.drawn = null;
    this.render();
    if (fromTable) this.timeline.select(this.position[i]);
  }
}
