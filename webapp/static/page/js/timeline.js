// The timeline: one lane per user, each session a bar coloured by instance, drawn on a <canvas>.
// Zoom (Ctrl/⌘ + wheel, pinch, a range dragged on the axis, buttons, +/-) and pan (drag, arrow
// keys) change the time window; a plain wheel scrolls the page. The time axis is a canvas of its
// own, sticky at the top of the screen while the lanes scroll under it. A lane's sessions
// are found by binary search. Many sessions in view are painted as pixel spans into a bitmap
// (aggregated: a frame writes each pixel about once, whatever the count); few are drawn as
// rectangles, touching bars narrower than MERGE_PX as one.

import { duration, number, utc } from "./format.js";

// Instance colours: from the Okabe-Ito and Paul Tol colour-blind-safe sets, darkened where needed
// so that each has at least 3:1 contrast on both lane backgrounds (tests/test_page.py computes it).
export const PALETTE = [
  "#0072b2", "#d55e00", "#009e73", "#aa4499", "#996600", "#332288",
  "#cc3311", "#5d6b00", "#882255", "#007a87", "#79706e", "#8c564b",
];
// The second cue, beyond 12 instances: a pattern of columns, [on, period] in CSS px (solid, then
// stripes of three widths), so 48 instances are told apart before a style repeats.
export const PATTERNS = [[1, 1], [4, 6], [2, 4], [1, 3]];
export const STYLES = PALETTE.length * PATTERNS.length;
export const LANE_BG = ["#f4f6f8", "#ffffff"]; // even lanes are shaded, odd ones show the panel

/** The colour and the pattern of style s (an instance's index modulo STYLES). */
export function styleOf(s) {
  return { colour: PALETTE[s % PALETTE.length], pattern: PATTERNS[Math.floor(s / PALETTE.length) % PATTERNS.length] };
}
// the colours as 32-bit RGBA pixels (little-endian: 0xAABBGGRR), for the bitmap path
const PALETTE32 = new Uint32Array(Array.from({ length: STYLES }, (_, s) => {
  const v = Number.parseInt(styleOf(s).colour.slice(1), 16);
  return ((0xff << 24) | ((v & 0xff) << 16) | (v & 0xff00) | (v >> 16)) >>> 0;
}));
const AXIS_H = 26;
const LABEL_W = 120;
const PAD_R = 8;
const MERGE_PX = 2;
const BITMAP_ABOVE = 4000; // sessions in view above which bars are painted as pixels
const MIN_SPAN_MS = 10_000;
const TICKS_MS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200,
  86400, 172800, 604800, 1209600, 2592000, 7776000, 15552000, 31536000].map((s) => s * 1000);

/** First position in a[lo, hi) whose value is >= x (a sorted ascending there). */
function lowerBound(a, lo, hi, x) {
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export class Timeline {
  /**
   * @param {HTMLCanvasElement} canvas
   * @param {HTMLElement} tooltip
   * @param {import("./sessions.js").SessionTable} table
   * @param {{start: number, end: number}} range the job's range (ms), widened to hold every session
   * @param {HTMLCanvasElement} [axis] the sticky axis (drawn over the canvas's top AXIS_H px)
   */
  constructor(canvas, tooltip, table, range, axis = null) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.axis = axis;
    this.axisCtx = axis ? axis.getContext("2d") : null;
    this.pointers = new Map(); // touch pointers down, for a two-finger pinch
    this.rangeDrag = null; // a range being dragged on the axis: [x from, x to] (CSS px)
    this.tooltip = tooltip;
    this.table = table;
    this.buildIndex();
    let lo = range.start;
    let hi = range.end;
    for (let l = 0; l < this.lanes; l++) {
      if (this.laneTo[l] > this.laneFrom[l]) {
        lo = Math.min(lo, this.start[this.laneFrom[l]]);
        hi = Math.max(hi, this.laneMaxEnd[l]);
      }
    }
    this.extent = [lo, Math.max(hi, lo + MIN_SPAN_MS)];
    this.view = [...this.extent];
    this.selected = -1;
    this.drag = null;
    this.pending = false;
    this.frames = [];
    this.mergePx = MERGE_PX; // 0 draws one rectangle per session (the benchmark's comparison)
    this.bitmapAbove = BITMAP_ABOVE; // Infinity never paints a bitmap (the same)
    canvas.timeline = this; // for tests and the benchmark: the canvas knows what it draws
    this.styles = { PALETTE, PATTERNS, LANE_BG }; // the same, for the palette's contrast test
    this.bindEvents();
    this.resize();
    this.observer = new ResizeObserver(() => this.resize());
    this.observer.observe(canvas.parentElement);
  }

  /** Stop following the page's size (the view is being left). */
  destroy() {
    this.observer.disconnect();
    window.removeEventListener("scroll", this.onScroll);
  }

  /** Sort positions by (lane, start) and note each lane's slice and longest session. */
  buildIndex() {
    const t = this.table;
    const n = t.n;
    const order = new Uint32Array(n);
    for (let i = 0; i < n; i++) order[i] = i;
    let sorted = true;
    for (let i = 1; i < n && sorted; i++) {
      sorted = t.lane[i - 1] < t.lane[i] || (t.lane[i - 1] === t.lane[i] && t.start[i - 1] <= t.start[i]);
    }
    if (!sorted) order.sort((a, b) => t.lane[a] - t.lane[b] || t.start[a] - t.start[b]);
    this.order = order;
    this.lanes = t.users.values.length;
    this.start = new Float64Array(n);
    this.end = new Float64Array(n);
    this.color = new Uint8Array(n);
    this.laneFrom = new Uint32Array(this.lanes);
    this.laneTo = new Uint32Array(this.lanes);
    this.laneMaxDur = new Float64Array(this.lanes);
    this.laneMaxEnd = new Float64Array(this.lanes);
    for (let k = 0; k < n; k++) {
      const i = order[k];
      const l = t.lane[i];
      this.start[k] = t.start[i];
      this.end[k] = Math.max(t.end[i], t.start[i]);
      this.color[k] = t.instance[i] % STYLES;
      if (k === 0 || t.lane[order[k - 1]] !== l) this.laneFrom[l] = k;
      this.laneTo[l] = k + 1;
      this.laneMaxDur[l] = Math.max(this.laneMaxDur[l], this.end[k] - this.start[k]);
      this.laneMaxEnd[l] = Math.max(this.laneMaxEnd[l], this.end[k]);
    }
  }

  resize() {
    const width = Math.max(320, this.canvas.parentElement.clientWidth);
    this.laneH = Math.max(3, Math.min(22, Math.floor(520 / Math.max(1, this.lanes))));
    const height = AXIS_H + this.lanes * this.laneH + 4;
    const dpr = window.devicePixelRatio || 1;
    if (this.cssW === width && this.cssH === height && this.dpr === dpr) return;
    this.cssW = width;
    this.cssH = height;
    this.dpr = dpr;
    this.canvas.style.width = `${width}px`;
    this.canvas.style.height = `${height}px`;
    this.canvas.width = Math.round(width * dpr);
    this.canvas.height = Math.round(height * dpr);
    if (this.axis) {
      this.axis.style.width = `${width}px`;
      this.axis.style.height = `${AXIS_H}px`;
      this.axis.width = Math.round(width * dpr);
      this.axis.height = Math.round(AXIS_H * dpr);
    }
    this.drawNow();
  }

  get plotW() {
    return this.cssW - LABEL_W - PAD_R;
  }

  get scale() {
    return this.plotW / (this.view[1] - this.view[0]);
  }

  timeAt(x) {
    return this.view[0] + (x - LABEL_W) / this.scale;
  }

  // --- view changes ------------------------------------------------------------------------------
  setView(v0, v1) {
    const [e0, e1] = this.extent;
    let span = Math.min(Math.max(v1 - v0, MIN_SPAN_MS), e1 - e0);
    let a = v0;
    if (a < e0) a = e0;
    if (a + span > e1) a = e1 - span;
    this.view = [a, a + span];
    this.requestDraw();
  }

  zoomAt(t, factor) {
    const [v0, v1] = this.view;
    this.setView(t - (t - v0) * factor, t + (v1 - t) * factor);
  }

  zoom(factor) {
    this.zoomAt((this.view[0] + this.view[1]) / 2, factor);
  }

  pan(fraction) {
    const span = this.view[1] - this.view[0];
    this.setView(this.view[0] + span * fraction, this.view[1] + span * fraction);
  }

  reset() {
    this.setView(...this.extent);
  }

  requestDraw() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.drawNow();
    });
  }

  // --- drawing -----------------------------------------------------------------------------------
  drawNow() {
    const began = performance.now();
    const ctx = this.ctx;
    ctx.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
    ctx.clearRect(0, 0, this.cssW, this.cssH);
    this.drawLanes();
    this.drawAxis();
    const { drawn, rects } = this.drawBars();
    this.drawSelection();
    const ms = performance.now() - began;
    this.frames.push(ms);
    if (this.frames.length > 200) this.frames.shift();
    Object.assign(this.canvas.dataset, {
      sessionsDrawn: String(drawn), sessionsTotal: String(this.table.n), rects: String(rects), drawMs: ms.toFixed(2),
      viewStart: new Date(this.view[0]).toISOString(), viewEnd: new Date(this.view[1]).toISOString(),
    });
    this.canvas.dispatchEvent(new CustomEvent("drawn", { detail: { drawn, rects, ms } }));
  }

  drawLanes() {
    const ctx = this.ctx;
    const h = this.laneH;
    ctx.fillStyle = LANE_BG[1];
    ctx.fillRect(0, AXIS_H, this.cssW, this.lanes * h);
    ctx.fillStyle = LANE_BG[0];
    ctx.beginPath();
    for (let l = 0; l < this.lanes; l += 2) ctx.rect(0, AXIS_H + l * h, this.cssW, h);
    ctx.fill();
    ctx.fillStyle = "#333";
    ctx.font = "11px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    const every = Math.ceil(13 / h); // one label per 13 px at most: they never overlap
    const users = this.table.users.values;
    for (let l = 0; l < this.lanes; l += every) {
      const name = users[l].length > 17 ? `${users[l].slice(0, 16)}…` : users[l];
      ctx.fillText(name, 4, AXIS_H + l * h + h / 2);
    }
  }

  drawAxis() {
    const ctx = this.ctx;
    const [v0, v1] = this.view;
    const scale = this.scale;
    const step = TICKS_MS.find((s) => s * scale >= 90) ?? TICKS_MS[TICKS_MS.length - 1];
    // the labels: on the sticky axis when there is one (it covers the canvas's top AXIS_H px)
    const lc = this.axisCtx || ctx;
    if (this.axisCtx) {
      lc.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
      lc.fillStyle = "#fff";
      lc.fillRect(0, 0, this.cssW, AXIS_H);
      lc.strokeStyle = "#999";
      lc.beginPath();
      lc.moveTo(0, AXIS_H - 0.5);
      lc.lineTo(this.cssW, AXIS_H - 0.5);
      lc.stroke();
      if (this.rangeDrag) {
        const [a, b] = this.rangeDrag;
        lc.fillStyle = "rgba(47, 109, 181, .25)";
        lc.fillRect(Math.min(a, b), 0, Math.abs(b - a), AXIS_H);
      }
    }
    lc.font = "11px system-ui, sans-serif";
    lc.fillStyle = "#333";
    lc.textBaseline = "alphabetic";
    lc.fillText("UTC", 4, AXIS_H - 9);
    ctx.strokeStyle = "#d0d5db";
    lc.strokeStyle = "#d0d5db";
    ctx.beginPath();
    lc.beginPath();
    for (let t = Math.ceil(v0 / step) * step; t <= v1; t += step) {
      const x = Math.round(LABEL_W + (t - v0) * scale) + 0.5;
      lc.moveTo(x, AXIS_H - 6);
      lc.lineTo(x, AXIS_H);
      ctx.moveTo(x, AXIS_H);
      ctx.lineTo(x, this.cssH);
      const iso = new Date(t).toISOString();
      const label = step >= 86400000 ? iso.slice(0, 10) : step >= 60000 ? `${iso.slice(5, 10)} ${iso.slice(11, 16)}` : iso.slice(11, 19);
      lc.fillText(label, x + 3, AXIS_H - 9);
    }
    lc.stroke();
    ctx.stroke();
    ctx.beginPath();
    ctx.moveTo(LABEL_W - 0.5, AXIS_H);
    ctx.lineTo(LABEL_W - 0.5, this.cssH);
    ctx.strokeStyle = "#999";
    ctx.stroke();
  }

  /** Per lane, the positions [from, to) of the sessions that may be in view, and their total. */
  visibleSlices() {
    const [v0, v1] = this.view;
    const slices = new Uint32Array(2 * this.lanes);
    let total = 0;
    for (let l = 0; l < this.lanes; l++) {
      const from = lowerBound(this.start, this.laneFrom[l], this.laneTo[l], v0 - this.laneMaxDur[l]);
      const to = lowerBound(this.start, from, this.laneTo[l], v1 + 1e-3);
      slices[2 * l] = from;
      slices[2 * l + 1] = to;
      total += to - from;
    }
    return { slices, total };
  }

  get barH() {
    return Math.max(1, this.laneH - (this.laneH > 6 ? 3 : 1));
  }

  /** The bars; returns how many sessions the frame shows and how many rectangles or pixel spans
   * it took. Many sessions in view: painted as pixel spans into a bitmap (aggregated, one write
   * per pixel whatever the count); few: rectangles batched by colour. */
  drawBars() {
    const visible = this.visibleSlices();
    const bitmap = visible.total > this.bitmapAbove;
    this.canvas.dataset.mode = bitmap ? "bitmap" : "rects";
    return bitmap ? this.drawBitmap(visible.slices) : this.drawRects(visible.slices);
  }

  drawRects(slices) {
    const { ctx, start, end, color, mergePx, barH } = this;
    const [v0] = this.view;
    const scale = this.scale;
    const x0Plot = LABEL_W;
    const x1Plot = LABEL_W + this.plotW;
    const batches = Array.from({ length: STYLES }, () => []);
    let drawn = 0;
    let rects = 0;
    for (let l = 0; l < this.lanes; l++) {
      const y = AXIS_H + l * this.laneH + (this.laneH - barH) / 2;
      let rx0 = -1;
      let rx1 = 0;
      let rc = 0;
      let rdur = -1;
      for (let k = slices[2 * l]; k < slices[2 * l + 1]; k++) {
        if (end[k] < v0) continue;
        drawn++;
        let x0 = x0Plot + (start[k] - v0) * scale;
        let x1 = x0Plot + (end[k] - v0) * scale;
        if (x0 < x0Plot) x0 = x0Plot;
        if (x1 > x1Plot) x1 = x1Plot;
        if (x1 - x0 < 1) x1 = x0 + 1;
        const d = end[k] - start[k];
        if (rx0 >= 0 && x0 <= rx1 + 0.5 && (x1 - x0 < mergePx || rx1 - rx0 < mergePx)) {
          if (x1 > rx1) rx1 = x1;
          if (d > rdur) {
            rdur = d;
            rc = color[k];
          }
        } else {
          if (rx0 >= 0) {
            batches[rc].push(rx0, y, rx1 - rx0);
            rects++;
          }
          rx0 = x0;
          rx1 = x1;
          rc = color[k];
          rdur = d;
        }
      }
      if (rx0 >= 0) {
        batches[rc].push(rx0, y, rx1 - rx0);
        rects++;
      }
    }
    for (let c = 0; c < STYLES; c++) {
      const b = batches[c];
      if (!b.length) continue;
      ctx.fillStyle = this.fill(c);
      ctx.beginPath();
      for (let i = 0; i < b.length; i += 3) ctx.rect(b[i], b[i + 1], b[i + 2], barH);
      ctx.fill();
    }
    return { drawn, rects };
  }

  /** A style's fill: its colour, or a pattern of columns of it (tiles in CSS px, from x = 0). */
  fill(s) {
    const { colour, pattern } = styleOf(s);
    if (pattern[0] === pattern[1]) return colour;
    this.patterns ??= new Map();
    if (!this.patterns.has(s)) {
      const tile = document.createElement("canvas");
      tile.width = pattern[1];
      tile.height = 1;
      const tc = tile.getContext("2d");
      tc.fillStyle = colour;
      tc.fillRect(0, 0, pattern[0], 1);
      this.patterns.set(s, this.ctx.createPattern(tile, "repeat"));
    }
    return this.patterns.get(s);
  }

  drawBitmap(slices) {
    const { start, end, color, dpr, barH } = this;
    const W = this.canvas.width;
    const H = this.canvas.height;
    if (!this.bitmap || this.bitmap.width !== W || this.bitmap.height !== H) {
      this.bitmap = new ImageData(W, H);
      this.pixels = new Uint32Array(this.bitmap.data.buffer);
      this.layer = document.createElement("canvas");
      this.layer.width = W;
      this.layer.height = H;
    }
    const px = this.pixels;
    px.fill(0);
    const v0 = this.view[0];
    const scale = this.scale * dpr;
    const left = Math.round(LABEL_W * dpr);
    const right = Math.round((LABEL_W + this.plotW) * dpr);
    const rows = Math.max(1, Math.round(barH * dpr));
    let drawn = 0;
    for (let l = 0; l < this.lanes; l++) {
      const base = Math.round((AXIS_H + l * this.laneH + (this.laneH - barH) / 2) * dpr) * W;
      let lo = right;
      let hi = left;
      for (let k = slices[2 * l]; k < slices[2 * l + 1]; k++) {
        if (end[k] < v0) continue;
        drawn++;
        let a = left + Math.floor((start[k] - v0) * scale);
        let b = left + Math.ceil((end[k] - v0) * scale);
        if (a < left) a = left;
        if (a > right - 1) a = right - 1;
        if (b > right) b = right;
        if (b <= a) b = a + 1;
        const c = color[k];
        if (c < PALETTE.length) { // solid
          if (b - a === 1) px[base + a] = PALETTE32[c];
          else px.fill(PALETTE32[c], base + a, base + b);
        } else { // the pattern's columns only, counted in CSS px from the canvas's left
          const [on, period] = PATTERNS[Math.floor(c / PALETTE.length) % PATTERNS.length];
          for (let x = a; x < b; x++) if (Math.floor(x / dpr) % period < on) px[base + x] = PALETTE32[c];
        }
        if (a < lo) lo = a;
        if (b > hi) hi = b;
      }
      for (let r = 1; r < rows && hi > lo; r++) px.copyWithin(base + r * W + lo, base + lo, base + hi);
    }
    const top = Math.round(AXIS_H * dpr);
    this.layer.getContext("2d").putImageData(this.bitmap, 0, 0, left, top, right - left, H - top);
    this.ctx.save();
    this.ctx.setTransform(1, 0, 0, 1, 0, 0);
    this.ctx.drawImage(this.layer, 0, 0);
    this.ctx.restore();
    return { drawn, rects: drawn };
  }

  barBox(k) {
    const lane = this.table.lane[this.order[k]];
    const x0 = Math.max(LABEL_W, LABEL_W + (this.start[k] - this.view[0]) * this.scale);
    const x1 = Math.min(LABEL_W + this.plotW, LABEL_W + (this.end[k] - this.view[0]) * this.scale);
    return { x0, x1: Math.max(x1, x0 + 1), y: AXIS_H + lane * this.laneH, h: this.laneH };
  }

  drawSelection() {
    if (this.selected < 0) return;
    const { x0, x1, y, h } = this.barBox(this.selected);
    this.ctx.strokeStyle = "#111";
    this.ctx.lineWidth = 2;
    this.ctx.strokeRect(x0 - 1, y, x1 - x0 + 2, h);
    this.ctx.lineWidth = 1;
  }

  // --- finding and showing one session ----------------------------------------------------------
  /** The sorted position of the session under (x, y), or -1. */
  hit(x, y) {
    const l = Math.floor((y - AXIS_H) / this.laneH);
    if (l < 0 || l >= this.lanes || x < LABEL_W) return -1;
    const t = this.timeAt(x);
    const tol = 4 / this.scale;
    let best = -1;
    let bestDist = Infinity;
    const lo = this.laneFrom[l];
    for (let k = lowerBound(this.start, lo, this.laneTo[l], t + tol + 1e-3) - 1; k >= lo; k--) {
      if (this.start[k] < t - tol - this.laneMaxDur[l]) break;
      if (this.end[k] < t - tol) continue;
      const dist = t < this.start[k] ? this.start[k] - t : t > this.end[k] ? t - this.end[k] : 0;
      if (dist < bestDist) {
        best = k;
        bestDist = dist;
      }
    }
    return best;
  }

  showTooltip(k, x, y) {
    const tip = this.tooltip;
    if (k < 0) {
      tip.hidden = true;
      return;
    }
    const s = this.table.row(this.order[k]);
    const lines = [
      [`${s.user}`, `${s.instance}`],
      ["start", `${utc(s.start)} UTC${s.truncated_start ? " (may have begun earlier)" : ""}`],
      ["end", `${utc(s.end)} UTC${s.truncated_end ? " (may go on later)" : ""}`],
      ["duration", duration(s.duration_s)],
      ["events", number(s.events)],
      ["screens", `${s.entry_screen} → ${s.exit_screen}`],
    ];
    if (s.split_reason) lines.push(["ended", s.split_reason]);
    if (s.active_s != null) lines.push(["active", duration(s.active_s)]);
    if (s.engaged != null) lines.push(["engaged", s.engaged ? "yes" : "no (a bounce)"]);
    if (s.screens != null) lines.push(["distinct screens", number(s.screens)]);
    if (s.session_id) lines.push(["id", s.session_id]);
    tip.replaceChildren(...lines.map(([a, b]) => {
      const row = document.createElement("div");
      const key = document.createElement("b");
      key.textContent = a;
      row.append(key, ` ${b}`);
      return row;
    }));
    tip.hidden = false;
    this.placeTooltip(x, y);
  }

  /** The tooltip beside (x, y) (canvas px), kept whole inside the window: it is position: fixed,
   * so no box around the timeline cuts it off, however few lanes there are. */
  placeTooltip(x, y) {
    const tip = this.tooltip;
    const box = this.canvas.getBoundingClientRect();
    const cx = box.left + x;
    const cy = box.top + y;
    const w = tip.offsetWidth;
    const h = tip.offsetHeight;
    const vw = document.documentElement.clientWidth;
    const vh = window.innerHeight;
    const left = Math.max(4, Math.min(cx + 12, vw - w - 4));
    let top = cy + 14;
    if (top + h > vh - 4) top = cy - h - 6; // above the pointer where the window ends below
    tip.style.left = `${left}px`;
    tip.style.top = `${Math.max(4, Math.min(top, vh - h - 4))}px`;
    this.tipAt = [x, y];
  }

  select(k) {
    if (k < 0 || k >= this.table.n) return;
    this.selected = k;
    const [v0, v1] = this.view;
    if (this.end[k] < v0 || this.start[k] > v1) {
      const half = (v1 - v0) / 2;
      const mid = (this.start[k] + this.end[k]) / 2;
      this.setView(mid - half, mid + half);
    }
    this.drawNow();
    const { x0, y } = this.barBox(k);
    this.showTooltip(k, x0, y);
    this.canvas.dispatchEvent(new CustomEvent("select", { detail: { k, row: this.order[k] } })); // the table follows
  }

  // --- input -------------------------------------------------------------------------------------
  bindEvents() {
    const c = this.canvas;
    // A plain wheel scrolls the page (a 500-lane timeline fills the screen); Ctrl/⌘ + wheel zooms
    // (a trackpad's pinch arrives so too); a sideways wheel or swipe pans.
    const wheel = (e) => {
      const x = e.clientX - c.getBoundingClientRect().left;
      if (e.ctrlKey || e.metaKey) {
        e.preventDefault();
        this.zoomAt(this.timeAt(x), Math.exp(Math.sign(e.deltaY) * Math.min(Math.abs(e.deltaY), 300) * 0.002));
      } else if (Math.abs(e.deltaX) > Math.abs(e.deltaY)) {
        e.preventDefault();
        this.setView(this.view[0] + e.deltaX / this.scale, this.view[1] + e.deltaX / this.scale);
      }
    };
    c.addEventListener("wheel", wheel, { passive: false });
    this.onScroll = () => {
      if (this.tooltip.hidden) return;
      if (this.selected >= 0 && this.tipAt) this.placeTooltip(...this.tipAt);
      else this.tooltip.hidden = true;
    };
    window.addEventListener("scroll", this.onScroll, { passive: true });
    if (this.axis) this.bindAxis(wheel);
    c.addEventListener("pointerdown", (e) => {
      if (e.pointerType === "touch") this.pointers.set(e.pointerId, e.clientX);
      if (this.pointers.size === 2) {
        const [a, b] = [...this.pointers.values()];
        this.drag = null;
        this.pinch = { d: Math.abs(a - b) || 1, mid: this.timeAt((a + b) / 2 - c.getBoundingClientRect().left), view: [...this.view] };
        return;
      }
      this.drag = { x: e.clientX, view: [...this.view], moved: false };
      c.setPointerCapture(e.pointerId);
    });
    const lift = (e) => {
      this.pointers.delete(e.pointerId);
      if (this.pointers.size < 2) this.pinch = null;
    };
    c.addEventListener("pointercancel", lift);
    c.addEventListener("pointermove", (e) => {
      if (this.pinch && this.pointers.has(e.pointerId)) {
        this.pointers.set(e.pointerId, e.clientX);
        const [a, b] = [...this.pointers.values()];
        const f = this.pinch.d / (Math.abs(a - b) || 1);
        const [v0, v1] = this.pinch.view;
        const t = this.pinch.mid;
        this.setView(t - (t - v0) * f, t + (v1 - t) * f);
        return;
      }
      if (this.drag) {
        const dx = e.clientX - this.drag.x;
        if (Math.abs(dx) > 2) this.drag.moved = true;
        const dt = dx / this.scale;
        this.setView(this.drag.view[0] - dt, this.drag.view[1] - dt);
        this.tooltip.hidden = true;
        return;
      }
      this.showTooltip(this.hit(e.offsetX, e.offsetY), e.offsetX, e.offsetY);
    });
    c.addEventListener("pointerup", (e) => {
      lift(e);
      const clicked = this.drag && !this.drag.moved;
      this.drag = null;
      if (clicked) {
        const k = this.hit(e.offsetX, e.offsetY);
        if (k >= 0) this.select(k);
      }
    });
    c.addEventListener("pointerleave", () => {
      if (this.selected < 0) this.tooltip.hidden = true;
    });
    c.addEventListener("focus", () => {
      if (this.selected < 0) this.select(this.firstVisible());
      else this.select(this.selected);
    });
    c.addEventListener("blur", () => {
      this.tooltip.hidden = true;
    });
    c.addEventListener("keydown", (e) => {
      const actions = {
        ArrowLeft: () => this.pan(e.shiftKey ? -0.5 : -0.1),
        ArrowRight: () => this.pan(e.shiftKey ? 0.5 : 0.1),
        "+": () => this.zoom(0.5),
        "=": () => this.zoom(0.5),
        "-": () => this.zoom(2),
        0: () => this.reset(),
        Home: () => this.reset(),
        "]": () => this.select(Math.min(this.table.n - 1, this.selected + 1)),
        "[": () => this.select(Math.max(0, this.selected - 1)),
        Escape: () => {
          this.selected = -1;
          this.tooltip.hidden = true;
          this.requestDraw();
        },
      };
      const action = actions[e.key];
      if (action) {
        e.preventDefault();
        action();
      }
    });
  }

  /** The axis: drag a range on it to zoom to that range (a click alone changes nothing). */
  bindAxis(wheel) {
    const a = this.axis;
    const x = (e) => Math.max(LABEL_W, Math.min(LABEL_W + this.plotW, e.clientX - a.getBoundingClientRect().left));
    a.addEventListener("wheel", wheel, { passive: false });
    a.addEventListener("pointerdown", (e) => {
      this.rangeDrag = [x(e), x(e)];
      a.setPointerCapture(e.pointerId);
    });
    a.addEventListener("pointermove", (e) => {
      if (!this.rangeDrag) return;
      this.rangeDrag[1] = x(e);
      this.requestDraw();
    });
    const end = (e, apply) => {
      if (!this.rangeDrag) return;
      const [x0, x1] = this.rangeDrag;
      this.rangeDrag = null;
      if (apply && Math.abs(x1 - x0) >= 4) this.setView(this.timeAt(Math.min(x0, x1)), this.timeAt(Math.max(x0, x1)));
      else this.requestDraw();
    };
    a.addEventListener("pointerup", (e) => end(e, true));
    a.addEventListener("pointercancel", (e) => end(e, false));
  }

  firstVisible() {
    for (let l = 0; l < this.lanes; l++) {
      const k = lowerBound(this.start, this.laneFrom[l], this.laneTo[l], this.view[0]);
      if (k < this.laneTo[l] && this.start[k] <= this.view[1]) return k;
    }
    return this.table.n ? 0 : -1;
  }

  /** "N sessions in view (R rectangles)", for the toolbar. */
  describe() {
    const d = this.canvas.dataset;
    return `${number(Number(d.sessionsDrawn))} of ${number(this.table.n)} sessions in view, ${utc(this.view[0], false)} → ${utc(this.view[1], false)} UTC`;
  }
}
