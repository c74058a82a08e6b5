"""The web page at ``/``, in a real browser (Debian's chromium driven by Playwright) against the
real stack: an embedded Redis, a real Celery worker reading the demo events, the API under gunicorn.

Where no chromium (or no Playwright) is found, the browser tests are skipped saying why.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack import ROOT, api_command, free_port, start_redis, wait_http, worker_command
from devstack.demo import DEMO_USERS, write_demo_events
from sessionizer.jobstore import JobStore

pytestmark = pytest.mark.slow  # a real browser, a Celery worker and the API under gunicorn

HOST = "127.0.0.1"
KEY = "page-test-key-0123456789abcdef"
RANGE = {"start": "2022-09-05T00:00", "end": "2022-10-03T00:00"}
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


def chromium_path() -> str | None:
    for candidate in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    return None


# --- the stack ------------------------------------------------------------------------------------
class Proc:
    """A child process (worker or API) started on demand and stopped with its process group."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args, self.env, self.log = args, env, log
        self.proc: subprocess.Popen | None = None

    def start(self) -> Proc:
        if self.proc is None:
            with open(self.log, "ab") as out:
                self.proc = subprocess.Popen(
                    self.args,
                    cwd=ROOT,
                    env=self.env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        self.proc = None


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Redis, a worker (started by the first test that needs it) and three APIs under gunicorn:
    one open, one requiring an API key, one requiring it and locking out after two wrong keys."""
    tmp = tmp_path_factory.mktemp("page")
    redis_server = start_redis(tmp / "redis")
    events = write_demo_events(tmp / "events.ndjson")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ELASTICSEARCH_", "EVENT", "API_KEYS", "AUTH_"))}
    env.update(
        REDIS_URL=redis_server.url,
        PYTHONUNBUFFERED="1",
        EVENT_SOURCE="file",
        EVENTS_PATH=str(events),
        EVENT_STORE_DIR=str(tmp / "cache"),
    )
    worker = Proc(worker_command(2, name="page"), env, tmp / "worker.log")
    apis = {}
    procs = [worker]
    keyed = {"AUTH_REQUIRED": "true", "API_KEYS": f"pagetest:{hashlib.sha256(KEY.encode()).hexdigest()}"}
    # strict: two wrong keys from an address, then a lockout of about a minute (its own Redis
    # database, so its counts do not lock the other APIs out)
    strict = {
        **keyed,
        "AUTH_FAILURES_BURST": "2",
        "AUTH_FAILURES_PER_S": "0.015",
        "REDIS_URL": redis_server.url.rsplit("/", 1)[0] + "/3",
    }
    for name, extra in {"open": {}, "keyed": keyed, "strict": strict}.items():
        port = free_port()
        procs.append(Proc(api_command(HOST, port, workers=1), {**env, **extra}, tmp / f"api-{name}.log").start())
        apis[name] = f"http://{HOST}:{port}"
    try:
        for base in apis.values():
            wait_http(f"{base}/healthz", timeout=60)
        yield {"worker": worker, "store": JobStore.from_url(redis_server.url), **apis}
    finally:
        for proc in procs:
            proc.stop()
        redis_server.stop()


def wait_worker_ready(stack: dict[str, Any], timeout: float = 90.0) -> None:
    worker: Proc = stack["worker"].start()
    deadline = time.monotonic() + timeout
    while b" ready." not in worker.log.read_bytes():
        assert worker.proc and worker.proc.poll() is None, worker.log.read_text()[-3000:]
        assert time.monotonic() < deadline, "celery worker did not start"
        time.sleep(0.1)


def api_get(url: str, key: str | None = None, accept: str = "application/json") -> Any:
    headers = {"Accept": accept, **({"Authorization": f"Bearer {key}"} if key else {})}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as resp:
        raw = resp.read()
    return json.loads(raw) if accept == "application/json" else raw.decode()


# --- the browser ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    path = chromium_path()
    if path is None:
        pytest.skip(
            "no chromium on this machine (apt-get install chromium, as .ci/run does when root): browser tests not run"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Playwright for Python is not installed (pip install -e '.[test]'): browser tests not run")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Watched:
    """A page whose console errors, uncaught exceptions and requested URLs are recorded."""

    def __init__(self, page: Any) -> None:
        self.page, self.errors, self.urls = page, [], []
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        page.on("request", lambda r: self.urls.append(r.url))


@pytest.fixture
def watched(browser: Any) -> Iterator[Watched]:
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    yield Watched(page)
    context.close()


def submit_through_form(page: Any, users: list[str], **params: str) -> str:
    page.wait_for_selector("#submit-form[data-ready=true]")
    page.fill("textarea[name=users]", "\n".join(users))
    page.fill("input[name=start]", RANGE["start"])
    page.fill("input[name=end]", RANGE["end"])
    for name, value in params.items():
        page.fill(f"input[name='param:{name}']", value)
    page.click("#submit-form button[type=submit]")
    page.wait_for_url("**/#/jobs/*")
    return page.url.rsplit("/", 1)[1]


def check_result(page: Any, base: str, job_id: str, key: str | None = None) -> int:
    """The summary, timeline and distribution show exactly the API's sessions; returns their count."""
    page.wait_for_selector("#timeline[data-sessions-drawn]")
    stats = api_get(f"{base}/jobs/{job_id}/sessions?limit=1", key)["stats"]
    lines = api_get(f"{base}/jobs/{job_id}/sessions", key, accept="application/x-ndjson").splitlines()
    assert stats["sessions"] == len(lines) > 0
    canvas = page.locator("#timeline")
    assert int(canvas.get_attribute("data-sessions-total")) == len(lines)
    assert int(canvas.get_attribute("data-sessions-drawn")) == len(lines)  # the whole range is in view
    assert int(page.locator("#distribution").get_attribute("data-total")) == len(lines)
    assert page.locator("#summary dd[data-stat=sessions]").inner_text() == f"{len(lines):,}"
    assert page.locator("#summary dd[data-stat='median duration']").inner_text() not in ("", "loading…")
    return len(lines)


# --- tests ----------------------------------------------------------------------------------------
def test_page_is_served_with_a_strict_policy_and_documented_defaults(stack: dict[str, Any]) -> None:
    with urllib.request.urlopen(f"{stack['open']}/", timeout=30) as resp:
        html = resp.read().decode()
        assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
    assert 'content="off"' in html and "http" not in html.split("<body")[0].replace("http-equiv", "")
    with urllib.request.urlopen(f"{stack['keyed']}/", timeout=30) as resp:
        assert 'name="sessionizer-auth" content="required"' in resp.read().decode()
    spec = api_get(f"{stack['open']}/openapi.json")
    assert "](/)" in spec["info"]["description"]  # Swagger UI (/docs) links to the page
    from sessionizer.methods import defaults

    for method, name in (("hdbscan", "HdbscanParams"), ("gap", "GapParams")):
        props = spec["components"]["schemas"][name]["properties"]
        for field, value in defaults(method).items():
            if value is not None:  # min_samples: derived from min_cluster_size, said in words
                assert props[field]["default"] == value, (name, field)


def test_submit_watch_progress_then_timeline_and_csv(watched: Watched, stack: dict[str, Any]) -> None:
    from playwright.sync_api import expect

    page, base = watched.page, stack["open"]
    page.goto(f"{base}/")
    page.wait_for_selector("#submit-form[data-ready=true]")
    # the form shows the method parameters with this deployment's defaults, read from /openapi.json
    assert page.input_value("input[name='param:min_cluster_size']") == "5"
    assert page.input_value("input[name='param:split_idle_s']") == "3600"
    page.select_option("select[name=method]", "gap")
    assert page.input_value("input[name='param:max_gap_s']") == "1800"
    page.select_option("select[name=method]", "hdbscan")

    # no worker yet: the job waits in the queue, and the page shows it so
    users = DEMO_USERS[:4]
    job_id = submit_through_form(page, users)
    page.wait_for_selector("#job-status.queued")
    assert "0 of 4 users" in page.inner_text("#job-progress-text")
    # then a worker comes: the page follows the job to the end without a reload
    wait_worker_ready(stack)
    page.wait_for_selector("#job-status.succeeded", timeout=120_000)
    assert "4 of 4 users" in page.inner_text("#job-progress-text")
    count = check_result(page, base, job_id)

    # zoom in: fewer sessions in view; back to the whole range: all of them again
    canvas = page.locator("#timeline")
    for _ in range(4):
        page.click("#tl-zoom-in")
    # (Playwright's expect polls without evaluating strings, which the page's CSP refuses)
    expect(canvas).not_to_have_attribute("data-sessions-drawn", str(count))
    assert int(canvas.get_attribute("data-sessions-drawn")) < count
    page.click("#tl-reset")
    expect(canvas).to_have_attribute("data-sessions-drawn", str(count))

    # hover a bar: its session's details; keyboard focus shows one too
    hover_bar(page, 0)
    tip = page.locator("#tooltip")
    session = api_get(f"{base}/jobs/{job_id}/sessions?limit=1")["sessions"][0]
    text = tip.inner_text()
    assert session["user"] in text and f"{session['entry_screen']} → {session['exit_screen']}" in text, text
    # the analytics fields: the hovered session's id, whether it is engaged, its active time
    everything = api_get(f"{base}/jobs/{job_id}/sessions")["sessions"]
    hovered = [s for s in everything if s["session_id"] in text]
    assert len(hovered) == 1, text
    assert ("engaged yes" if hovered[0]["engaged"] else "engaged no") in text and "active " in text
    first = min(everything, key=lambda s: (s["start"], s["user"]))
    row = page.evaluate("[...document.querySelector('#st-scroll .st-row').children].map(c => c.textContent)")
    assert row[0] == first["user"] and row[-1] == ("yes" if first["engaged"] else "no"), row
    page.mouse.move(1, 1)
    canvas.focus()
    page.keyboard.press("]")
    tip.wait_for(state="visible")
    assert "events" in tip.inner_text()

    # download the CSV (fetched, saved from a Blob) and read it back
    with page.expect_download() as info:
        page.click("#dl-csv")
    rows = list(csv.DictReader(io.StringIO(Path(info.value.path()).read_text())))
    assert info.value.suggested_filename == f"sessions-{job_id}.csv"
    assert len(rows) == count and {r["user"] for r in rows} <= set(users)

    # the list shows it, newest first
    page.click("a[href='#/']")
    row = page.locator(f"tr[data-job-id='{job_id}']")
    row.wait_for()
    assert row.get_attribute("data-status") == "succeeded"
    assert watched.errors == []


def test_cancel_and_delete_from_the_list(watched: Watched, stack: dict[str, Any]) -> None:
    page, base, store = watched.page, stack["open"], stack["store"]
    # A job recorded in the real store but never enqueued stays queued, so there is time to cancel it.
    request = {
        "users": ["romain"],
        "start": "2022-09-05T00:00:00Z",
        "end": "2022-09-06T00:00:00Z",
        "method": "gap",
        "params": {"max_gap_s": 1800.0, "max_span_s": 86400.0},
        "group_by": ["user"],
    }
    job = store.create(request, deadline_s=3600)
    page.on("dialog", lambda d: d.accept())
    page.goto(f"{base}/")
    row = page.locator(f"tr[data-job-id='{job['id']}']")
    row.wait_for()
    assert row.get_attribute("data-status") == "queued"
    row.get_by_role("button", name="cancel").click()
    page.wait_for_selector(f"tr[data-job-id='{job['id']}'][data-status=cancelled]")
    assert store.view(job["id"])["status"] == "cancelled"
    page.locator(f"tr[data-job-id='{job['id']}']").get_by_role("button", name="delete").click()
    page.wait_for_selector(f"tr[data-job-id='{job['id']}']", state="detached")
    assert store.view(job["id"]) is None
    assert watched.errors == []


def test_field_errors_are_shown_beside_their_fields(watched: Watched, stack: dict[str, Any]) -> None:
    page = watched.page
    page.goto(f"{stack['open']}/")
    page.wait_for_selector("#submit-form[data-ready=true]")
    page.fill("textarea[name=users]", "romain")
    page.fill("input[name=start]", "2022-09-10T00:00")
    page.fill("input[name=end]", "2022-09-05T00:00")
    page.fill("input[name='param:min_cluster_size']", "1")
    page.click("#submit-form button[type=submit]")
    page.wait_for_selector("[data-error=end]:not(:empty)")
    assert "after" in page.inner_text("[data-error=end]")
    assert page.inner_text("[data-error='params.min_cluster_size']") != ""
    assert "#/jobs/" not in page.url


def test_with_a_required_key(watched: Watched, stack: dict[str, Any]) -> None:
    page, base = watched.page, stack["keyed"]
    wait_worker_ready(stack)
    page.goto(f"{base}/")
    dialog = page.locator("#key-dialog")
    dialog.wait_for(state="visible")  # asked before any request, so no 401 is needed to find out
    page.fill("#key-input", "a-wrong-key")
    page.click("#key-use")
    page.wait_for_selector("#key-error:text('refused')")
    assert dialog.is_visible() and page.locator("#key-status").is_hidden()  # checked first: not stored
    assert page.evaluate("sessionStorage.getItem('sessionizer.apiKey')") is None
    page.fill("#key-input", KEY)
    page.click("#key-use")
    page.wait_for_selector("#key-status:not([hidden])")
    dialog.wait_for(state="hidden")
    job_id = submit_through_form(page, DEMO_USERS[:2])
    page.wait_for_selector("#job-status.succeeded", timeout=120_000)
    count = check_result(page, base, job_id, KEY)
    with page.expect_download() as info:
        page.click("#dl-ndjson")
    assert len(Path(info.value.path()).read_text().splitlines()) == count
    # the key is kept for the browser session (a reload does not ask again), never put in a URL
    page.reload()
    page.wait_for_selector("#timeline[data-sessions-drawn]")
    assert not dialog.is_visible()
    assert page.evaluate("sessionStorage.getItem('sessionizer.apiKey')") == KEY
    assert not [u for u in watched.urls if KEY in u]
    # the open API's jobs are another owner's: this key does not see them
    page.goto(f"{base}/#/")
    page.wait_for_selector(f"tr[data-job-id='{job_id}']")
    listed = page.eval_on_selector_all("tr[data-job-id]", "rows => rows.map(r => r.dataset.jobId)")
    assert set(listed) == {j["id"] for j in api_get(f"{base}/jobs?limit=100", KEY)["jobs"]}
    assert [e for e in watched.errors if "status of 401" not in e] == []  # the wrong key's check, logged


def store_finished_job(
    store: JobStore, sessions: dict[str, list[dict[str, Any]]], end: str = "2024-01-08T00:00:00Z"
) -> str:
    """A succeeded job (from 2024-01-01 to ``end``) whose sessions are given, written through the
    real job store as the workers write theirs (one unit per user)."""
    request = {
        "users": list(sessions),
        "start": "2024-01-01T00:00:00Z",
        "end": end,
        "method": "gap",
        "params": {"max_gap_s": 1800.0, "max_span_s": 86400.0},
        "group_by": ["user"],
    }
    job = store.create(request, deadline_s=3600)
    store.start(job["id"], len(sessions))
    for unit, rows in enumerate(sessions.values()):
        store.complete_unit(
            job["id"],
            unit,
            1,
            rows,
            {
                "users": 1,
                "events": sum(r["events"] for r in rows),
                "invalid_events": 0,
                "noise_events": 0,
                "sessions": len(rows),
            },
        )
    assert store.finish(job["id"])
    return job["id"]


def session(user: str, day: int, hour: int, minutes: int, instance: str, reason: str | None) -> dict[str, Any]:
    row = {
        "user": user,
        "instance": instance,
        "start": f"2024-01-{day:02d}T{hour:02d}:00:00Z",
        "end": f"2024-01-{day:02d}T{hour:02d}:{minutes:02d}:00Z",
        "duration_s": minutes * 60.0,
        "events": 12,
        "entry_screen": "login",
        "exit_screen": "logout",
        "truncated_start": False,
        "truncated_end": False,
    }
    if reason is not None:
        row["split_reason"] = reason
    return row


def test_both_drawing_paths_paint_every_session_and_tell_why_it_ended(watched: Watched, stack: dict[str, Any]) -> None:
    page = watched.page
    sessions = {
        "ada": [session("ada", d, 9, 45, "inst-a", "idle gap") for d in range(1, 8)],
        "bob": [session("bob", d, 14, 30, "inst-b", None) for d in range(1, 8)],
    }
    job_id = store_finished_job(stack["store"], sessions)
    page.goto(f"{stack['open']}/#/jobs/{job_id}")
    canvas = page.locator("#timeline")
    page.wait_for_selector("#timeline[data-sessions-drawn]")
    probe = r"""(bitmapAbove) => {
        const c = document.querySelector('#timeline'), t = c.timeline;
        t.bitmapAbove = bitmapAbove; t.drawNow();
        const ctx = c.getContext('2d'), dpr = t.dpr;
        const colours = [];
        for (let k = 0; k < t.table.n; k++) {  // the colour at the middle of each session's bar
          const b = t.barBox(k);
          const x = Math.round((b.x0 + b.x1) / 2 * dpr), y = Math.round((b.y + b.h / 2) * dpr);
          const p = ctx.getImageData(x, y, 1, 1).data;
          const rgb = [p[0], p[1], p[2]].map(v => v.toString(16).padStart(2, '0')).join('');
          colours.push('#' + rgb + (p[3] ? '' : '/clear'));
        }
        const hex = (css) => '#' + css.match(/\d+/g).slice(0, 3)
          .map(v => Number(v).toString(16).padStart(2, '0')).join('');
        const legend = Object.fromEntries([...document.querySelectorAll('#legend .chip')].map(
          chip => [chip.textContent, hex(getComputedStyle(chip.querySelector('.swatch')).backgroundColor)]));
        const expected = Array.from(t.order, i => legend[t.table.instances.values[t.table.instance[i]]]);
        return {mode: c.dataset.mode, drawn: Number(c.dataset.sessionsDrawn), colours, expected};
    }"""
    for bitmap_above, mode in ((1_000_000, "rects"), (0, "bitmap")):
        out = page.evaluate(probe, bitmap_above)
        assert out["mode"] == mode and out["drawn"] == 14
        assert out["colours"] == out["expected"], mode  # every bar painted, in its instance's colour
    # why a session ended is shown when the job gives it, and only then
    page.evaluate("document.querySelector('#timeline').timeline.select(0)")
    assert "ended idle gap" in page.locator("#tooltip").inner_text()
    page.evaluate("document.querySelector('#timeline').timeline.select(7)")
    assert "bob" in page.locator("#tooltip").inner_text() and "ended" not in page.locator("#tooltip").inner_text()
    assert canvas.get_attribute("data-sessions-total") == "14"
    assert watched.errors == []


def test_key_dialog_cancel_escape_and_the_lockout(watched: Watched, stack: dict[str, Any]) -> None:
    page = watched.page
    page.goto(f"{stack['strict']}/")
    dialog = page.locator("#key-dialog")
    dialog.wait_for(state="visible")
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")
    no_key = page.locator("#no-key")
    no_key.wait_for()  # says what is missing and how to give it, not "Waiting for an API key..."
    assert "No key is set" in no_key.inner_text() and "Waiting" not in page.inner_text("#view")
    page.click("#key-again")
    dialog.wait_for(state="visible")
    page.click("#key-cancel")
    dialog.wait_for(state="hidden")
    no_key.wait_for()

    page.click("#key-again")
    for attempt in range(2):  # the address's two wrong keys: refused, the dialog stays
        page.fill("#key-input", f"wrong-key-{attempt}")
        page.click("#key-use")
        page.wait_for_selector("#key-error:text('refused')")
    page.fill("#key-input", "wrong-key-2")
    page.click("#key-use")
    error = page.locator("#key-error")
    page.wait_for_selector("#key-error[data-retry-at]")
    assert re.search(r"Try again in \d+ s \(at \d\d:\d\d:\d\d UTC\)", error.inner_text()), error.inner_text()
    retry_at = int(error.get_attribute("data-retry-at")) / 1000
    assert 20 < retry_at - time.time() < 200  # the API's Retry-After (one wrong key forgiven every ~67 s)
    assert page.locator("#key-use").is_disabled() and dialog.is_visible()
    assert page.evaluate("sessionStorage.getItem('sessionizer.apiKey')") is None  # the wrong key is not kept
    assert page.locator("#key-status").is_hidden()
    assert [e for e in watched.errors if "status of 401" not in e and "status of 429" not in e] == []


def many_users_job(store: JobStore, users: int, instances: int = 2) -> str:
    """A finished job of ``users`` users, a session a day each for a week, on ``instances`` instances."""
    names = [f"user{u:03d}" for u in range(users)]
    return store_finished_job(
        store,
        {
            n: [
                session(n, d, 8 + (u + d) % 10, 20 + (u * d) % 30, f"inst-{(u + d) % instances}", None)
                for d in range(1, 8)
            ]
            for u, n in enumerate(names)
        },
    )


BAR_CENTRE = """(k) => {
    const canvas = document.querySelector('#timeline');
    const r = canvas.getBoundingClientRect(), b = canvas.timeline.barBox(k);
    return {x: r.left + (b.x0 + b.x1) / 2, y: r.top + b.y + b.h / 2};
}"""


def hover_bar(page: Any, k: int, attempts: int = 3) -> None:
    """Put the mouse on the k-th session's bar until its tooltip shows. The bar's place is read
    and the mouse moved at once, and again if the layout moved in between (the panels below the
    timeline appear after it is drawn, and a page that grows gains a scrollbar: the canvas
    narrows and redraws). A tooltip that never shows still fails."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for attempt in range(attempts):
        spot = page.evaluate(BAR_CENTRE, k)
        page.mouse.move(1, 1)
        page.mouse.move(spot["x"], spot["y"])
        try:
            page.wait_for_selector("#tooltip:not([hidden])", timeout=10_000)
            return
        except PlaywrightTimeout:
            if attempt == attempts - 1:
                raise


def until(page: Any, expression: str, predicate: Any = bool, timeout: float = 30.0) -> Any:
    """Evaluate ``expression`` until ``predicate`` holds for its value (Playwright's own polling
    evaluates a string as a function, which the page's CSP refuses)."""
    deadline = time.monotonic() + timeout
    while True:
        value = page.evaluate(expression)
        if predicate(value):
            return value
        assert time.monotonic() < deadline, f"{expression} still {value!r}"
        time.sleep(0.05)


VIEW = "(() => { const t = document.querySelector('#timeline').timeline; return [t.view[0], t.view[1]]; })()"


def test_wheel_scrolls_ctrl_wheel_zooms_axis_sticks_and_zoom_is_kept(watched: Watched, stack: dict[str, Any]) -> None:
    page = watched.page
    job_id = many_users_job(stack["store"], 200)  # 200 lanes: the timeline is taller than the window
    page.set_viewport_size({"width": 1280, "height": 600})
    page.goto(f"{stack['open']}/#/jobs/{job_id}")
    page.wait_for_selector("#timeline[data-sessions-drawn]")
    canvas = page.locator("#timeline")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    whole = page.evaluate(VIEW)
    page.mouse.move(box["x"] + box["width"] / 2, max(box["y"], 0) + 200)
    before = page.evaluate("window.scrollY")
    page.mouse.wheel(0, 400)  # a plain wheel: the page scrolls, the zoom stays
    until(page, "window.scrollY", lambda y: y > before)
    assert page.evaluate(VIEW) == whole

    # the axis stays at the top of the window while the lanes scroll under it
    page.evaluate("window.scrollBy(0, document.querySelector('#timeline').getBoundingClientRect().top + 200)")
    top = page.evaluate("document.querySelector('#timeline').getBoundingClientRect().top")
    assert top < -50, top  # the timeline's own top is above the window
    axis = page.evaluate(
        "(() => { const r = document.querySelector('#timeline-axis').getBoundingClientRect();"
        " return [r.top, r.height]; })()"
    )
    assert abs(axis[0]) < 1 and axis[1] == 26, axis

    # Ctrl + wheel zooms, and the page does not move
    scrolled = page.evaluate("window.scrollY")
    page.keyboard.down("Control")
    page.mouse.wheel(0, -300)
    page.keyboard.up("Control")
    until(page, VIEW, lambda v: v[1] - v[0] < whole[1] - whole[0])
    assert page.evaluate("window.scrollY") == scrolled

    # a range dragged on the axis becomes the view
    page.click("#tl-reset")
    until(page, VIEW, lambda v: v == whole)
    ab = page.locator("#timeline-axis").bounding_box()
    want = page.evaluate(
        f"[{ab['x']} + 200, {ab['x']} + 400].map(x => document.querySelector('#timeline').timeline"
        f".timeAt(x - {ab['x']}))"
    )
    page.mouse.move(ab["x"] + 200, ab["y"] + 10)
    page.mouse.down()
    page.mouse.move(ab["x"] + 300, ab["y"] + 12)
    page.mouse.move(ab["x"] + 400, ab["y"] + 12)
    page.mouse.up()
    until(page, VIEW, lambda v: v[1] - v[0] < whole[1] - whole[0])
    got = page.evaluate(VIEW)
    assert abs(got[0] - want[0]) < 1 and abs(got[1] - want[1]) < 1, (got, want)

    # the zoom is in the address: a reload shows the same range
    until(page, "location.hash", lambda h: "from=" in h)
    assert f"#/jobs/{job_id}?" in page.url
    page.reload()
    page.wait_for_selector("#timeline[data-sessions-drawn]")
    again = page.evaluate(VIEW)
    assert abs(again[0] - got[0]) < 1 and abs(again[1] - got[1]) < 1
    assert watched.errors == []


TIP_FITS = """() => {
    const tip = document.querySelector('#tooltip');
    if (tip.hidden) return 'hidden';
    const r = tip.getBoundingClientRect();
    const vw = document.documentElement.clientWidth, vh = window.innerHeight;
    if (r.left < 0 || r.top < 0 || r.right > vw || r.bottom > vh) return `outside the window: ${JSON.stringify(r)}`;
    for (let el = tip.parentElement; el && el !== document.body; el = el.parentElement) {
      const s = getComputedStyle(el);
      if (s.overflowX !== 'visible' || s.overflowY !== 'visible') {
        const b = el.getBoundingClientRect();
        if (r.left < b.left || r.top < b.top || r.right > b.right || r.bottom > b.bottom)
          return `cut by ${el.id || el.className}`;
      }
    }
    return 'ok';
}"""


@pytest.mark.parametrize("users", [1, 2, 3])
def test_the_tooltip_is_never_cut_off(watched: Watched, stack: dict[str, Any], users: int) -> None:
    page = watched.page
    job_id = many_users_job(stack["store"], users)
    page.goto(f"{stack['open']}/#/jobs/{job_id}")
    page.wait_for_selector("#timeline[data-sessions-drawn]")
    page.wait_for_selector("#dist-panel:not([hidden])")  # the last panel: the layout is whole
    for scroll in ("start", "end"):  # the timeline at the top of the window, then at its bottom
        page.evaluate(f"document.querySelector('#timeline').scrollIntoView({{block: '{scroll}'}})")
        for k in (0, users * 7 - 1):  # the first session (left) and the last one (right), bottom lane
            hover_bar(page, k)
            assert page.evaluate(TIP_FITS) == "ok", (users, scroll, k)
            page.mouse.move(1, 1)
    assert watched.errors == []


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


OVERFLOW = """() => {
    const vw = document.documentElement.clientWidth;
    // (inside a box that scrolls sideways by itself, as the sessions table's, wide is fine)
    const scrolls = (e) => { for (let a = e.parentElement; a; a = a.parentElement)
        if (['auto', 'scroll'].includes(getComputedStyle(a).overflowX)) return true; return false; };
    const wide = [...document.querySelectorAll('#view *')].filter(e => e.getBoundingClientRect().right > vw + 0.5
        && !e.closest('[hidden]') && getComputedStyle(e).position !== 'fixed' && !scrolls(e));
    return {page: document.documentElement.scrollWidth, vw,
            wide: wide.slice(0, 5).map(e => `${e.tagName}#${e.id}.${e.className}`)};
}"""


@pytest.mark.parametrize(("width", "height"), [(390, 844), (1280, 900)])
def test_phone_and_desktop_layouts_fit_the_screen(
    browser: Any, stack: dict[str, Any], tmp_path: Path, width: int, height: int
) -> None:
    job_id = many_users_job(stack["store"], 3, instances=3)
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    watched = Watched(page)
    try:
        page.goto(f"{stack['open']}/")
        page.locator(f"tr[data-job-id='{job_id}']").wait_for()
        home = page.evaluate(OVERFLOW)
        assert home["page"] <= width and home["wide"] == [], home  # the jobs table fits, no sideways scroll
        row = page.locator(f"tr[data-job-id='{job_id}']").bounding_box()
        assert row["x"] >= 0 and row["x"] + row["width"] <= width
        shot = page.screenshot(path=str(tmp_path / f"home-{width}.png"), full_page=True)
        assert png_size(shot)[0] == width  # a full-page capture as wide as the screen: nothing sticks out
        page.goto(f"{stack['open']}/#/jobs/{job_id}")
        page.wait_for_selector("#timeline[data-sessions-drawn]")
        job = page.evaluate(OVERFLOW)
        assert job["page"] <= width and job["wide"] == [], job
        shot = page.screenshot(path=str(tmp_path / f"job-{width}.png"), full_page=True)
        assert png_size(shot)[0] == width and png_size(shot)[1] > height / 2
        assert watched.errors == []
    finally:
        context.close()


def luminance(rgb: tuple[int, int, int]) -> float:
    """WCAG 2 relative luminance of an sRGB colour."""
    lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in (v / 255 for v in rgb)]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def contrast(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def rgb(hex_colour: str) -> tuple[int, int, int]:
    return tuple(int(hex_colour.lstrip("#")[i : i + 2], 16) for i in (0, 2, 4))  # type: ignore[return-value]


def test_instance_styles_contrast_3_to_1_and_do_not_repeat_after_12(watched: Watched, stack: dict[str, Any]) -> None:
    page = watched.page
    rows = []
    for i in range(40):  # 40 instances, one two-hour session each
        day, hour = 1 + i // 6, 1 + (i % 6) * 4
        rows.append(
            {
                **session("ada", day, hour, 0, f"inst-{i:02d}", None),
                "end": f"2024-01-{day:02d}T{hour + 2:02d}:00:00Z",
                "duration_s": 7200.0,
            }
        )
    bob = {**session("bob", 1, 1, 0, "inst-00", None), "end": "2024-01-01T03:00:00Z", "duration_s": 7200.0}
    job_id = store_finished_job(stack["store"], {"ada": rows, "bob": [bob]})
    page.goto(f"{stack['open']}/#/jobs/{job_id}")
    page.wait_for_selector("#timeline[data-sessions-drawn]")
    probe = r"""(bitmapAbove) => {
        const c = document.querySelector('#timeline'), t = c.timeline;
        t.bitmapAbove = bitmapAbove; t.drawNow();
        const ctx = c.getContext('2d'), dpr = t.dpr;
        const px = (x, y) => Array.from(ctx.getImageData(Math.round(x * dpr), Math.round(y * dpr), 1, 1).data);
        const bars = [];
        for (let k = 0; k < t.table.n; k++) {  // every pixel along the middle of each bar
          const b = t.barBox(k);
          const row = [];
          for (let x = Math.ceil(b.x0) + 1; x < Math.floor(b.x1) - 1; x++) row.push(px(x + 0.25, b.y + b.h / 2));
          const i = t.order[k];
          bars.push({instance: t.table.instances.values[t.table.instance[i]], lane: t.table.lane[i], row});
        }
        const right = t.cssW - 3;  // past the last session: only the lanes' own backgrounds
        return {mode: c.dataset.mode, bars, styles: t.styles,
                lanes: [px(right, 26 + t.laneH / 2), px(right, 26 + t.laneH * 1.5)]};
    }"""
    legend = page.evaluate(
        "[...document.querySelectorAll('#legend .chip')].map(chip => { const s = getComputedStyle("
        "chip.querySelector('.swatch')); return [chip.textContent, s.backgroundColor, s.backgroundImage]; })"
    )
    assert len({(colour, image) for _, colour, image in legend}) == 40  # 40 instances, 40 different swatches
    for bitmap_above, mode in ((1_000_000, "rects"), (0, "bitmap")):
        out = page.evaluate(probe, bitmap_above)
        assert out["mode"] == mode
        palette, patterns = out["styles"]["PALETTE"], out["styles"]["PATTERNS"]
        lanes = [tuple(p[:3]) for p in out["lanes"]]
        assert lanes == [rgb(c) for c in out["styles"]["LANE_BG"]]  # the backgrounds really painted
        for colour in palette:  # computed, WCAG 2: every instance colour on both lane backgrounds
            assert min(contrast(rgb(colour), lane) for lane in lanes) >= 3.0, colour
        seen = set()
        for bar in out["bars"]:
            index = int(bar["instance"].split("-")[1])
            colour, (on, period) = rgb(palette[index % 12]), patterns[index // 12]
            lane = lanes[bar["lane"] % 2]
            painted = [tuple(p[:3]) != lane for p in bar["row"]]
            assert {tuple(p[:3]) for p in bar["row"]} <= {colour, lane}, (mode, bar["instance"])
            assert all(painted) == (on == period) and any(painted), (mode, bar["instance"])  # gaps: the 2nd cue
            assert abs(sum(painted) / len(painted) - on / period) < 0.2, (mode, bar["instance"])
            seen.add((colour, on, period))
        assert len(seen) == 40  # no two instances look alike (up to 48)
    assert watched.errors == []


def test_form_in_plain_words_with_presets_known_range_and_edit_resubmit(
    watched: Watched, stack: dict[str, Any]
) -> None:
    page, store = watched.page, stack["store"]
    # a finished job of this (open) API's owner that read events in March 2021
    request = {
        "users": ["ada", "bob"],
        "start": "2021-03-01T00:00:00Z",
        "end": "2021-03-15T00:00:00Z",
        "method": "gap",
        "params": {"max_gap_s": 900.0, "max_span_s": 86400.0},
        "group_by": ["user", "instance"],
    }
    job = store.create(request, deadline_s=3600)
    store.start(job["id"], 1)
    store.record_progress(job["id"], 0, 250)
    store.complete_unit(
        job["id"],
        0,
        2,
        [session("ada", 2, 9, 30, "i1", None)],
        {"users": 2, "events": 250, "invalid_events": 0, "noise_events": 0, "sessions": 1},
    )
    assert store.finish(job["id"])

    page.goto(f"{stack['open']}/")
    page.wait_for_selector("#submit-form[data-ready=true]")
    form = page.locator("#submit-form")
    text = form.inner_text() + " ".join(
        page.eval_on_selector_all("#submit-form [title]", "els => els.map(e => e.title)")
    )
    assert "`" not in text and not re.search(r"\de[+-]?\d", text), text  # no markup nor raw floats
    assert "31,622,400" in text  # the bound of the _s parameters, as a number one can read
    # the range defaults to where this owner's jobs found events, and says so
    assert page.input_value("input[name=start]") == "2021-03-01T00:00"
    assert "2021-03-01" in page.inner_text("#range-hint")
    page.click("button[data-days='30']")
    start, end = (time.strptime(page.input_value(f"input[name={n}]"), "%Y-%m-%dT%H:%M") for n in ("start", "end"))
    assert (time.mktime(end) - time.mktime(start)) / 86400 == 30 and end.tm_hour == 0
    page.click("#range-known")
    assert page.input_value("input[name=start]") == "2021-03-01T00:00"

    # edit and resubmit: the form starts from the job's request
    page.goto(f"{stack['open']}/#/jobs/{job['id']}")
    page.click("#job-edit")
    page.wait_for_selector(f"#submit-form[data-editing='{job['id']}']")
    assert page.input_value("textarea[name=users]") == "ada\nbob"
    assert page.input_value("input[name=start]") == "2021-03-01T00:00"
    assert page.input_value("input[name=end]") == "2021-03-15T00:00"
    assert (
        page.input_value("select[name=method]") == "gap"
        and page.input_value("select[name=group_by]") == "user,instance"
    )
    assert page.input_value("input[name='param:max_gap_s']") == "900"
    page.fill("textarea[name=users]", "ada\nchloe")
    page.click("#submit-form button[type=submit]")
    page.wait_for_url("**/#/jobs/*")
    new_id = page.url.rsplit("/", 1)[1].split("?")[0]
    resubmitted = api_get(f"{stack['open']}/jobs/{new_id}")["request"]
    assert new_id != job["id"] and resubmitted["users"] == ["ada", "chloe"]
    assert resubmitted["params"]["max_gap_s"] == 900 and resubmitted["group_by"] == ["user", "instance"]
    assert resubmitted["start"].startswith("2021-03-01T00:00")
    assert watched.errors == []


def big_job(store: JobStore, users: int = 500, per_user: int = 200) -> tuple[str, list[dict[str, Any]]]:
    """users x per_user sessions (100,000 by default) over 2024, seeded; returns the id and the rows."""
    import random

    rng = random.Random(18)
    base = 1_704_067_200  # 2024-01-01T00:00:00Z
    sessions: dict[str, list[dict[str, Any]]] = {}
    for u in range(users):
        name = f"u{u:03d}"
        t = base + rng.randrange(3600)
        rows = []
        for _ in range(per_user):
            t += rng.randrange(600, 40_000)
            length = rng.randrange(30, 7200)
            rows.append(
                {
                    "user": name,
                    "instance": f"i{rng.randrange(5)}",
                    "start": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)),
                    "end": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t + length)),
                    "duration_s": float(length),
                    "events": rng.randrange(2, 300),
                    "entry_screen": "home",
                    "exit_screen": f"s{rng.randrange(9)}",
                    "truncated_start": False,
                    "truncated_end": False,
                }
            )
            t += length
        sessions[name] = rows
    job_id = store_finished_job(store, sessions, end="2024-12-31T00:00:00Z")
    return job_id, [r for rows in sessions.values() for r in rows]


TABLE = """() => { const s = document.querySelector('#st-scroll');
    return {rows: Number(s.dataset.rows), dom: s.querySelectorAll('.st-row').length,
            first: s.querySelector('.st-row')?.innerText.split(/\\t|\\n/),
            selected: s.querySelector('.st-row.selected')?.innerText.split(/\\t|\\n/) ?? null}; }"""


def test_session_table_of_100000_rows_sorted_filtered_and_linked(watched: Watched, stack: dict[str, Any]) -> None:
    page = watched.page
    job_id, rows = big_job(stack["store"])
    page.goto(f"{stack['open']}/#/jobs/{job_id}")
    page.wait_for_selector("#timeline[data-sessions-drawn]")
    page.wait_for_selector("#st-scroll .st-row")
    table = page.evaluate(TABLE)
    assert table["rows"] == 100_000 and 0 < table["dom"] < 100  # virtualised: only the rows in sight are built
    assert page.inner_text("#st-count") == "100,000 of 100,000 sessions"
    first = min(rows, key=lambda r: (r["start"], r["user"]))
    assert table["first"][:3] == [first["user"], first["instance"], first["start"][:19].replace("T", " ")]

    # sorted by events, most first (a second click); the last row reached by scrolling
    page.click("#st-head [data-key=events]")
    page.click("#st-head [data-key=events]")
    assert page.get_attribute("#st-head [data-key=events]", "aria-sort") == "descending"
    top = page.evaluate(TABLE)["first"]
    assert int(top[5].replace(",", "")) == max(r["events"] for r in rows)
    page.evaluate("(() => { const s = document.querySelector('#st-scroll'); s.scrollTop = s.scrollHeight; })()")
    last = until(
        page,
        "(() => { const r = [...document.querySelectorAll('#st-scroll .st-row')];"
        " return r.length ? r[r.length - 1].innerText.split(/\\t|\\n/) : null; })()",
        lambda v: v is not None and int(v[5].replace(",", "")) == min(r["events"] for r in rows),
    )
    assert len(last) >= 6

    # filtered by user: that user's sessions only, and the filter is kept in the address
    page.select_option("#st-user", label="u123")
    assert page.inner_text("#st-count") == "200 of 100,000 sessions"
    shown = page.eval_on_selector_all("#st-scroll .st-row", "rows => rows.map(r => r.innerText.split(/\\t|\\n/)[0])")
    assert set(shown) == {"u123"}
    until(page, "location.hash", lambda h: "user=u123" in h)

    # a click on a row selects its session on the timeline; a step on the timeline, in the table
    page.click("#st-scroll .st-row >> nth=0")
    picked = page.evaluate(TABLE)["selected"]
    tip = page.locator("#tooltip")
    tip.wait_for(state="visible")
    assert "u123" in tip.inner_text() and picked[2] in tip.inner_text()
    page.focus("#timeline")
    page.keyboard.press("]")
    stepped = until(page, TABLE, lambda t: t["selected"] and t["selected"] != picked)["selected"]
    assert stepped[2] in page.locator("#tooltip").inner_text()
    page.reload()  # the kept filter comes back
    page.wait_for_selector("#st-scroll .st-row")
    assert page.inner_text("#st-count") == "200 of 100,000 sessions"
    assert watched.errors == []


def test_distribution_shows_its_values(watched: Watched, stack: dict[str, Any]) -> None:
    page = watched.page
    job_id = many_users_job(stack["store"], 3)
    page.goto(f"{stack['open']}/#/jobs/{job_id}")
    page.wait_for_selector("#distribution[data-total]")
    chart = page.locator("#distribution")
    assert chart.get_attribute("data-values-shown") == "true"  # 7 wide bars: their counts drawn above them
    chart.scroll_into_view_if_needed()
    box = chart.bounding_box()
    page.mouse.move(box["x"] + box["width"] - 20, box["y"] + box["height"] / 2)  # the last day's bar
    until(page, "document.querySelector('#dist-value').textContent", lambda t: t.startswith("2024-01-07"))
    assert page.inner_text("#dist-value") == "2024-01-07: 3 sessions"
    page.select_option("#dist-kind", "duration")
    page.mouse.move(box["x"] + 60, box["y"] + box["height"] / 2)
    page.mouse.move(box["x"] + box["width"] * 0.4, box["y"] + box["height"] / 2)  # the 15-30 min bin
    until(page, "document.querySelector('#dist-value').textContent", lambda t: t.startswith("15–30 min"))
    in_bin = sum(15 <= 20 + (u * d) % 30 < 30 for u in range(3) for d in range(1, 8))  # many_users_job's lengths
    assert page.inner_text("#dist-value") == f"15–30 min: {in_bin} sessions"
    assert watched.errors == []


def test_a_job_without_sessions_says_why(watched: Watched, stack: dict[str, Any]) -> None:
    page = watched.page
    job_id = store_finished_job(stack["store"], {"nobody-by-that-name": []})
    page.goto(f"{stack['open']}/#/jobs/{job_id}")
    page.wait_for_selector("#job-error.warn:not([hidden])")
    assert "no event of these users in this range" in page.inner_text("#job-error")
    page.wait_for_selector("#timeline[data-sessions-drawn='0']")
    assert page.inner_text("#st-count") == "0 of 0 sessions"
    assert watched.errors == []
