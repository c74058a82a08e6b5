// A bar chart of sessions per UTC day, or of session durations, on a <canvas>.

import { number } from "./format.js";

const DAY_MS = 86_400_000;
const DURATION_EDGES = [0, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, Infinity];
const DURATION_LABELS = ["<1 min", "1–5 min", "5–15 min", "15–30 min", "30–60 min", "1–2 h", "2–4 h", "4–8 h", "≥8 h"];

/** [labels, counts] of sessions per UTC day, every day from the first to the last. */
export function perDay(table) {
  if (!table.n) return [[], []];
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < table.n; i++) {
    const d = Math.floor(table.start[i] / DAY_MS);
    if (d < lo) lo = d;
    if (d > hi) hi = d;
  }
  const counts = new Array(hi - lo + 1).fill(0);
  for (let i = 0; i < table.n; i++) counts[Math.floor(table.start[i] / DAY_MS) - lo]++;
  const labels = counts.map((_, k) => new Date((lo + k) * DAY_MS).toISOString().slice(0, 10));
  return [labels, counts];
}

/** [labels, counts] of sessions per duration bin. */
export function perDuration(table) {
  const counts = new Array(DURATION_LABELS.length).fill(0);
  for (let i = 0; i < table.n; i++) {
    const d = table.duration[i];
    let b = 0;
    while (d >= DURATION_EDGES[b + 1]) b++;
    counts[b]++;
  }
  return [DURATION_LABELS, counts];
}

export function drawDistribution(canvas, table, kind) {
  const [labels, counts] = kind === "duration" ? perDuration(table) : perDay(table);
  const width = Math.max(320, canvas.parentElement.clientWidth);
  const height = 180;
  const dpr = window.devicePixelRatio || 1;
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  canvas.width = Math.round(width * dpr);
  canvas.height = Math.round(height * dpr);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const left = 48;
  const bottom = height - 24;
  const top = 22; // room for the values above the tallest bar
  const max = Math.max(1, ...counts);
  const bw = (width - left - 8) / Math.max(1, counts.length);
  ctx.fillStyle = "#4e79a7";
  ctx.beginPath();
  counts.forEach((c, k) => {
    const h = ((bottom - top) * c) / max;
    ctx.rect(left + k * bw + (bw > 4 ? 1 : 0), bottom - h, Math.max(1, bw - (bw > 4 ? 2 : 0)), h);
  });
  ctx.fill();
  ctx.fillStyle = "#333";
  ctx.font = "11px system-ui, sans-serif";
  // each bar's value above it, where the bars are wide enough for their numbers
  ctx.textAlign = "center";
  const widest = Math.max(...counts.map((c) => ctx.measureText(number(c)).width));
  const valuesShown = bw >= widest + 4;
  if (valuesShown) {
    counts.forEach((c, k) => {
      const h = ((bottom - top) * c) / max;
      ctx.fillText(number(c), left + (k + 0.5) * bw, Math.max(top + 8, bottom - h - 3));
    });
  }
  ctx.textAlign = "right";
  ctx.fillText(number(max), left - 6, top + 8);
  ctx.fillText("0", left - 6, bottom);
  ctx.textAlign = "center";
  const every = Math.max(1, Math.ceil(90 / bw));
  labels.forEach((label, k) => {
    const x = Math.min(width - ctx.measureText(label).width / 2 - 2, left + (k + 0.5) * bw);
    if (k % every === 0) ctx.fillText(label, x, height - 8);
  });
  ctx.textAlign = "left";
  const total = counts.reduce((a, b) => a + b, 0);
  canvas.bins = { labels, counts, left, bw, kind };
  canvas.dataset.valuesShown = String(valuesShown);
  canvas.dataset.total = String(total);
  canvas.dataset.bins = String(counts.length);
  canvas.setAttribute("aria-label", `${kind === "duration" ? "Session durations" : "Sessions per day"}: `
    + labels.map((l, k) => `${l}: ${counts[k]}`).join(", "));
}

/** Under the chart, the value of the bar pointed at (all of them are in the canvas's label too). */
export function showValues(canvas, out) {
  canvas.addEventListener("pointermove", (e) => {
    const b = canvas.bins;
    if (!b) return;
    const k = Math.floor((e.offsetX - b.left) / b.bw);
    if (k < 0 || k >= b.counts.length) return;
    out.textContent = `${b.labels[k]}: ${number(b.counts[k])} session${b.counts[k] === 1 ? "" : "s"}`;
    out.dataset.bin = String(k);
  });
}
