"""The job page with 100,000 sessions in headless chromium (issue 12).

    python -m benchmarks.bench_page [--runs 3] [--users 500] [--per-user 200] [--frames 20]
    python -m benchmarks.bench_page --screenshot docs/page-job.png   # a real demo job, for the README

The result is synthetic but goes through the real path: ``--users`` x ``--per-user`` sessions
(random durations, 24 instances, over 90 days) are stored through the real job store (as the
workers' units store theirs, one unit per 10 users), the API under gunicorn serves them, and the
page fetches them as streamed NDJSON like any job's. A real job of that size would need hours of
demo events; the page cannot tell the difference.

Reported, min/median/max over ``--runs`` page loads:
1. load: from navigation to the first drawn timeline (fetch + parse of the NDJSON stream,
   indexing, first frame), and the part of it spent reading the sessions;
2. frame times (JavaScript + rasterisation: each frame is flushed with ``getImageData``) for the
   whole range, 20 zoom steps (x0.8 around the middle) and 20 pan steps (10% of the view), side by
   side, alternating: the page as it is (aggregated: over 4,000 sessions in view painted as pixel
   spans into a bitmap, fewer as rectangles with touching sub-2-pixel bars merged) and one
   rectangle per session.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from devstack import local_stack
from sessionizer.jobstore import JobStore

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
START = np.datetime64("2024-01-01T00:00:00", "ms")
DAYS = 90

FRAMES_JS = """
async ([steps, aggregated]) => {
  const canvas = document.querySelector('#timeline');
  const t = canvas.timeline;
  const ctx = canvas.getContext('2d');
  const defaults = [t.mergePx, t.bitmapAbove];
  if (!aggregated) [t.mergePx, t.bitmapAbove] = [0, Infinity];
  const frame = () => { const a = performance.now(); t.drawNow(); ctx.getImageData(0, 0, 1, 1);
                        return performance.now() - a; };
  const out = {full: [], zoom: [], pan: []};
  t.reset();
  for (let i = 0; i < steps; i++) out.full.push(frame());
  out.mode = canvas.dataset.mode;
  const mid = (t.extent[0] + t.extent[1]) / 2;
  for (let i = 0; i < steps; i++) { t.zoomAt(mid, 0.8); t.pending = false; out.zoom.push(frame()); }
  for (let i = 0; i < steps; i++) { t.pan(i < steps / 2 ? 0.1 : -0.1); t.pending = false; out.pan.push(frame()); }
  out.rects = Number(canvas.dataset.rects);
  out.lastMode = canvas.dataset.mode;
  [t.mergePx, t.bitmapAbove] = defaults;
  t.reset();
  t.pending = false;
  t.drawNow();
  out.drawn = Number(canvas.dataset.sessionsDrawn);
  return out;
}
"""


def synthetic_sessions(users: int, per_user: int, seed: int = 7) -> dict[str, list[dict[str, Any]]]:
    """Sessions per user: sorted starts over DAYS days, about 30 min long (lognormal), ending before the next."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[dict[str, Any]]] = {}
    reasons = ["idle gap", "density split", "range end"]
    for u in range(users):
        span = DAYS * 86_400_000
        starts = np.sort(rng.uniform(0, span * 0.99, per_user)).astype("int64")
        next_gap = np.diff(starts, append=span)
        durations = np.maximum(np.minimum(rng.lognormal(7.5, 1.0, per_user) * 1000, next_gap * 0.9), 1000).astype(
            "int64"
        )
        rows = []
        for k in range(per_user):
            start = START + np.timedelta64(int(starts[k]), "ms")
            end = start + np.timedelta64(int(durations[k]), "ms")
            rows.append(
                {
                    "user": f"user{u:04d}",
                    "instance": f"instance{int(rng.integers(24)):02d}",
                    "start": f"{start}Z",
                    "end": f"{end}Z",
                    "duration_s": int(durations[k]) / 1000,
                    "events": int(rng.integers(2, 200)),
                    "entry_screen": "connexion",
                    "exit_screen": f"e{k % 7}",
                    "truncated_start": False,
                    "truncated_end": False,
                    "split_reason": reasons[k % 3],
                }
            )
        out[f"user{u:04d}"] = rows
    return out


def store_synthetic_job(store: JobStore, users: int, per_user: int) -> tuple[str, int]:
    """A succeeded job holding the synthetic sessions, written as the workers write theirs."""
    sessions = synthetic_sessions(users, per_user)
    names = list(sessions)
    end = START + np.timedelta64(DAYS, "D")
    request = {
        "users": names,
        "start": f"{START}Z",
        "end": f"{end}Z",
        "method": "gap",
        "params": {"max_gap_s": 1800.0, "max_span_s": 86400.0},
        "group_by": ["user"],
    }
    job = store.create(request, deadline_s=86_400)
    units = [names[i : i + 10] for i in range(0, len(names), 10)]
    store.start(job["id"], len(units))
    for k, unit in enumerate(units):
        rows = [s for name in unit for s in sessions[name]]
        store.complete_unit(
            job["id"],
            k,
            len(unit),
            rows,
            {
                "users": len(unit),
                "events": sum(s["events"] for s in rows),
                "invalid_events": 0,
                "noise_events": 0,
                "sessions": len(rows),
            },
        )
    store.finish(job["id"])
    return job["id"], users * per_user


def spread(values: list[float]) -> str:
    return f"{min(values):8.1f} {statistics.median(values):8.1f} {max(values):8.1f}"


def measure(browser: Any, base: str, job_id: str, count: int, runs: int, steps: int) -> None:
    load, read = [], []
    frames: dict[str, dict[str, list[float]]] = {
        on: {"full": [], "zoom": [], "pan": []} for on in ("aggregated", "per session")
    }
    rects: dict[str, int] = {}
    modes: dict[str, str] = {}
    for run in range(runs):
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(300_000)
        page.goto(f"{base}/#/jobs/{job_id}")
        page.wait_for_selector("#timeline[data-sessions-drawn]")
        marks = page.evaluate("""() => Object.fromEntries(performance.getEntriesByType('mark')
            .map(m => [m.name, m.startTime]))""")
        load.append(marks["sessionizer:timeline-drawn"])
        read.append(marks["sessionizer:sessions-loaded"])
        order = [("aggregated", True), ("per session", False)]
        for name, aggregated in order if run % 2 == 0 else order[::-1]:
            out = page.evaluate(FRAMES_JS, [steps, aggregated])
            assert out["drawn"] == count, f"the page drew {out['drawn']} of {count} sessions"
            for kind in ("full", "zoom", "pan"):
                frames[name][kind] += out[kind]
            rects[name] = out["rects"]
            modes[name] = f"{out['mode']} for the whole range, {out['lastMode']} after the zoom steps"
        page.close()
    print(f"{count:,} sessions, {runs} page loads; times in ms: min median max")
    print(f"  navigation -> timeline drawn        {spread(load)}")
    print(f"    of which: sessions read (NDJSON)  {spread(read)}")
    print(f"  frame times ({steps} frames per kind and run), aggregation on vs off:")
    for kind, label in (("full", "whole range"), ("zoom", "zoom steps"), ("pan", "pan steps")):
        on, off = frames["aggregated"][kind], frames["per session"][kind]
        ratio = statistics.median(off) / statistics.median(on)
        print(f"  {label:12} aggregated {spread(on)} | per session {spread(off)} | x{ratio:.1f}")
    print(f"  aggregated: {modes['aggregated']}; per session: {modes['per session']}")
    print(f"  sessions in the last pan frame: {rects['per session']:,}")


def screenshot(browser: Any, base: str, out: Path) -> None:
    """Submit the demo job through the form, wait for it, and capture the job page."""
    from devstack.demo import DEMO_USERS

    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(180_000)
    page.goto(f"{base}/")
    page.wait_for_selector("#submit-form[data-ready=true]")
    page.fill("textarea[name=users]", "\n".join(DEMO_USERS))
    page.fill("input[name=start]", "2022-09-05T00:00")
    page.fill("input[name=end]", "2022-10-03T00:00")
    page.click("#submit-form button[type=submit]")
    page.wait_for_selector("#timeline[data-sessions-drawn]")
    for _ in range(2):
        page.click("#tl-zoom-in")
    box = page.evaluate("""() => { const t = document.querySelector('#timeline').timeline;
        const k = t.firstVisible() + 3; const b = t.barBox(k); t.select(k);
        return {x: (b.x0 + b.x1) / 2, y: b.y + b.h / 2}; }""")
    origin = page.locator("#timeline").bounding_box()
    page.mouse.move(origin["x"] + box["x"], origin["y"] + box["y"])
    page.wait_for_selector("#tooltip:not([hidden])")
    out.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out), full_page=True)
    print(f"wrote {out}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--per-user", type=int, default=200)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--screenshot", type=Path, help="capture a real demo job's page to this PNG instead")
    args = parser.parse_args()
    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        print("no chromium found (apt-get install chromium): the page benchmark cannot run")
        return 1
    from playwright.sync_api import sync_playwright

    with local_stack(workers=0, apis=0) as stack:  # (its folder removed at the end)
        files: dict[str, str] = {}
        if args.screenshot:
            from devstack.demo import write_demo_events

            files = {
                "EVENT_SOURCE": "file",
                "EVENTS_PATH": str(write_demo_events(stack.tmp / "events.ndjson")),
                "EVENT_STORE_DIR": str(stack.tmp / "cache"),
            }
            stack.add_worker(2, name="bench-page", **files)
        base = stack.add_api(1, name="api", **files)  # the project's gunicorn settings, one worker process
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            if args.screenshot:
                screenshot(browser, base, args.screenshot)
            else:
                started = time.perf_counter()
                job_id, count = store_synthetic_job(JobStore.from_url(stack.redis_url), args.users, args.per_user)
                print(
                    f"stored a synthetic job of {count:,} sessions through the job store in "
                    f"{time.perf_counter() - started:.1f} s"
                )
                measure(browser, base, job_id, count, args.runs, args.frames)
            browser.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
