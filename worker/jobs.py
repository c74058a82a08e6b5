"""What the tasks do: plan a job into units, and turn one unit's events into sessions."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import numpy as np
import redis
from billiard.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded, WorkerLostError

from sessionizer.analytics import session_id
from sessionizer.jobstore import JobStore, LeaseLost, iso
from sessionizer.settings import get_settings
from sessionizer.status import JobStatus

from .core import SPLIT_REASONS, method_params, read_margin_ms, sessions_in_range
from .lease import UnitLease
from .sources import EventSource, SourceError, Stopped, UserEvents, source_from_settings
from .sources.instrumented import InstrumentedSource

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def store() -> JobStore:
    s = get_settings()
    return JobStore.from_url(s.redis.url, s.jobs.ttl_s)


@lru_cache(maxsize=1)
def source() -> EventSource:
    settings = get_settings()
    # counts documents scanned and invalid, and the source's failures (worker/metrics.py)
    return InstrumentedSource(source_from_settings(settings), settings.source_kind)


def epoch_ms(value: str) -> int:
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


# A unit is about this many events when the users' counts are known (the event store's
# manifests); a heavier user is a unit alone. Unknown counts (a cold store) make at most
# UNKNOWN_UNITS units, so 10,000 small users never make 10,000 tasks.
UNIT_EVENTS = 200_000
UNKNOWN_UNITS = 64


def plan_units(users: list[str], counts: dict[str, int] | None) -> list[list[str]]:
    """Users (sorted) grouped into units of roughly equal work, in user order."""
    if counts is None:
        size = max(1, -(-len(users) // UNKNOWN_UNITS))
        return [users[i : i + size] for i in range(0, len(users), size)]
    units: list[list[str]] = []
    current: list[str] = []
    load = 0
    for user in users:
        n = counts.get(user, 0)
        if current and load + n > UNIT_EVENTS:
            units.append(current)
            current, load = [], 0
        current.append(user)
        load += n
    if current:
        units.append(current)
    return units


def read_window(request: dict[str, Any]) -> tuple[dict[str, Any], int, int]:
    """A job's method parameters and the range its units read (the request's, plus the margin)."""
    method = request["method"]
    try:
        params = method_params(method, request.get("params"))
    except ValueError as exc:
        raise InvalidParameters(str(exc)) from None
    margin = read_margin_ms(method, params)
    return params, epoch_ms(request["start"]) - margin, epoch_ms(request["end"]) + margin


def _known_counts(users: list[str], request: dict[str, Any]) -> dict[str, int] | None:
    counts = getattr(source(), "counts", None)
    if counts is None:
        return None
    try:
        _, lo, hi = read_window(request)
        return counts(users, lo, hi)
    except Exception as exc:  # noqa: BLE001 - sizing is a hint: without it, units are sized by count
        log.info("no event counts to size the units by (%s: %s)", type(exc).__name__, exc)
        return None


def plan_job(job_id: str) -> list[tuple[int, list[str]]]:
    """Units of a job still to run, in user order (the order results are read in): groups of
    users of roughly equal work (:func:`plan_units`), recorded with the job when it starts.

    A redelivered plan (its worker died after starting the job) sends again only the units that
    have not reported, as first planned; those are idempotent anyway.
    """
    st = store()
    st.expire_overdue(job_id)  # a job past its deadline is failed, not planned
    job = st.get(job_id)
    if job is None or not job.active:
        return []
    if job.status == JobStatus.QUEUED:
        users = sorted(job.request["users"])
        planned = plan_units(users, _known_counts(users, job.request))
        if not st.start(job_id, len(planned), planned):
            return []
        return list(enumerate(planned))
    planned = st.unit_plan(job_id) or [[u] for u in sorted(job.request["users"])]
    done = st.done_units(job_id)
    return [(i, u) for i, u in enumerate(planned) if i not in done]


def _session_rows(
    ev: UserEvents, table: Any, mask: np.ndarray, screens: list[str], instances: list[str], group: str = ""
) -> list[dict[str, Any]]:
    rows = []
    for i in np.flatnonzero(mask):
        start_ms, end_ms = int(table.start_ms[i]), int(table.end_ms[i])
        rows.append(
            {
                "user": ev.user,
                "instance": instances[int(table.instance[i])],
                "start": iso(datetime.fromtimestamp(start_ms / 1000, UTC)),
                "end": iso(datetime.fromtimestamp(end_ms / 1000, UTC)),
                "duration_s": (end_ms - start_ms) / 1000,
                "events": int(table.events[i]),
                "entry_screen": screens[int(table.entry_screen[i])],
                "exit_screen": screens[int(table.exit_screen[i])],
                "truncated_start": bool(table.truncated_start[i]),
                "truncated_end": bool(table.truncated_end[i]),
                "split_reason": SPLIT_REASONS[int(table.split_reason[i])],
                "session_id": session_id(ev.user, group, start_ms),
                "screens": int(table.screens[i]),
                "engaged": bool(table.engaged[i]),
                "active_s": int(table.active_ms[i]) / 1000,
            }
        )
    return rows


def sessionize_user(
    ev: UserEvents,
    request: dict[str, Any],
    params: dict[str, Any],
    read_lo: int,
    read_hi: int,
    vocab: tuple[list[str], list[str]],
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """One user's sessions overlapping the request's range, and the counts behind them."""
    method = request["method"]
    start, end = epoch_ms(request["start"]), epoch_ms(request["end"])
    in_range = (ev.t_ms >= start) & (ev.t_ms <= end)
    # one group of all the user's events, or one per instance; the whole timeline is not copied
    groups: list[Any] = [slice(None)]
    keys = [""]  # the grouping key of each group, part of its sessions' ids
    if "instance" in request.get("group_by", ["user"]):
        codes = np.unique(ev.instance)
        groups = [np.flatnonzero(ev.instance == code) for code in codes]
        keys = [vocab[1][int(code)] for code in codes]
    rows: list[dict[str, Any]] = []
    noise = 0
    for idx, key in zip(groups, keys):
        # the events were read from [read_lo, read_hi], the range plus read_margin_ms
        view = sessions_in_range(ev.t_ms[idx], ev.screen[idx], ev.instance[idx], start, end, method, params)
        noise += view.noise_events
        table = view.sessions
        rows += _session_rows(ev, table, np.ones(len(table), dtype=bool), *vocab, group=key)
    rows.sort(key=lambda r: (r["start"], r["instance"]))
    stats = {
        "users": int(bool(in_range.any())),
        "events": int(in_range.sum()),
        "noise_events": noise,
        "sessions": len(rows),
    }
    return rows, stats


class UnitLost(Exception):
    """The unit lost its worker UNIT_MAX_ATTEMPTS times: its workers keep dying."""


def run_unit(job_id: str, index: int, users: list[str]) -> str:
    """Read a unit's events, sessionize them, store the result; finalise the job if last.

    Every way out records an outcome: the result is stored, or the job is failed with its
    reason, or the job had already ended (cancelled, failed, deleted: "skipped"/"stopped"), or
    another copy of the unit holds its lease or has stored it ("duplicate"), or this copy lost
    its lease on the way and its result was refused ("fenced"). Redis errors are the one
    exception: they are raised for the task to retry, and a task that runs out of retries (or
    is killed at the hard time limit) fails its job through :func:`give_up`.
    """
    st = store()
    try:
        with UnitLease(st, job_id, index) as lease:
            return _run_unit(st, job_id, index, users, lease)
    except Stopped:
        return "stopped"
    except LeaseLost:
        log.warning("job %s unit %s: another worker took this unit over; its result was not stored", job_id, index)
        return "fenced"
    except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
        raise  # the task retries these with backoff (worker/tasks.py)
    except Exception as exc:  # a failed job says why, instead of staying "running"
        kind, message = failure_of(exc)
        if kind == "internal_error":
            log.exception("job %s unit %s failed", job_id, index)
        else:
            log.warning("job %s unit %s: %s", job_id, index, message)
        st.fail(job_id, kind, message)
        return "failed"


def _run_unit(st: JobStore, job_id: str, index: int, users: list[str], lease: UnitLease) -> str:
    st.expire_overdue(job_id)  # a job past its deadline is failed, not run further
    job = st.get(job_id)
    if job is None or job.status != JobStatus.RUNNING:
        return "skipped"  # cancelled, failed, expired, or deleted: nothing more to do
    grant = lease.take()
    if grant.outcome == "lost":
        raise UnitLost(
            f"unit {index} (users {', '.join(users)[:200]}) lost its worker {grant.lost} times "
            f"(killed, out of memory, or its host gone); not run again"
        )
    if grant.outcome != "ok":
        return "skipped" if grant.outcome == "gone" else "duplicate"  # done, or a live lease holds it
    request = job.request
    params, read_lo, read_hi = read_window(request)
    acc = source().read_events(
        users,
        read_lo,
        read_hi,
        should_stop=lambda: st.status(job_id) != JobStatus.RUNNING,
        on_progress=lambda n: st.record_progress(job_id, index, n, 0),
        since_ms=epoch_ms(job.started_at) if job.started_at else None,
    )
    st.record_progress(job_id, index, acc.scanned, acc.from_source)
    vocab = acc.vocabulary()
    sessions: list[dict[str, Any]] = []
    totals = {"users": 0, "events": 0, "invalid_events": acc.invalid, "noise_events": 0, "sessions": 0}
    for user in sorted(users):
        rows, stats = sessionize_user(acc.pop_user(user), request, params, read_lo, read_hi, vocab)
        sessions += rows
        for name, value in stats.items():
            totals[name] += value
    if st.complete_unit(job_id, index, len(users), sessions, totals, lease=lease.token):
        st.finish(job_id)
    return "done"


class InvalidParameters(Exception):
    """The job's method parameters do not validate."""


def failure_of(exc: BaseException) -> tuple[str, str]:
    """The ``(error type, message)`` a job failed by ``exc`` reports (no secret: messages are ours
    or the exception's own, which never carry credentials)."""
    if isinstance(exc, SourceError):
        return exc.kind, str(exc)
    if isinstance(exc, InvalidParameters):
        return "invalid_parameters", str(exc)
    if isinstance(exc, UnitLost):
        return "worker_lost", str(exc)
    if isinstance(exc, SoftTimeLimitExceeded):
        limit = get_settings().celery.task_soft_time_limit_s
        return "time_limit", f"a unit ran longer than the time limit ({limit} s) and was stopped"
    if isinstance(exc, TimeLimitExceeded):
        limit = get_settings().celery.task_time_limit_s
        return "time_limit", f"a unit ran longer than the hard time limit ({limit} s) and was killed"
    if isinstance(exc, WorkerLostError):
        return "worker_lost", f"a unit's worker process died ({exc})"[:500]
    if isinstance(exc, redis.RedisError):
        return "store_unavailable", f"the job store (Redis) failed past every retry: {type(exc).__name__}: {exc}"[:500]
    return "internal_error", f"{type(exc).__name__}: {exc}"[:500]


def give_up(job_id: str, exc: BaseException) -> None:
    """A task of this job ended without recording an outcome (its retries ran out, an error
    escaped it, or it was killed at the hard time limit): fail the job with the reason.

    When Redis itself cannot be reached, nothing can be recorded; the job's deadline then fails
    it the next time it is read.
    """
    kind, message = failure_of(exc)
    log.error("job %s: a task gave up (%s): %s", job_id, kind, message)
    try:
        store().fail(job_id, kind, message)
    except redis.RedisError as err:
        log.error("job %s: could not record the failure (%s); its deadline will", job_id, err)
