"""sessionizer: the command line of the Sessionizer job API (it mirrors the Python client)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from typing import IO, Any, NoReturn

from . import __version__
from ._core import CSV, DEFAULT_URL
from ._files import atomic_file
from ._retry import RetryPolicy
from ._sync import Client, Job
from .errors import (
    APIError,
    ConnectionFailed,
    InvalidRequest,
    JobError,
    ServiceUnavailable,
    SessionizerError,
)
from .models import Session, format_time

FORMATS = ("table", "csv", "ndjson", "json", "parquet")
EPILOG = """\
The service's URL and API key come from --url/--api-key, else from the environment variables
SESSIONIZER_URL (default http://127.0.0.1:8000) and SESSIONIZER_API_KEY.

Exit codes:
  0    success
  1    the job failed or was cancelled (its reason is printed)
  2    a usage or request error (bad arguments, invalid job, unknown job id, refused API key, ...)
  3    the service could not be reached (connection errors, 502/503/504, after the retries)
  130  interrupted (Ctrl-C) while waiting: the job goes on; the command to resume is printed
"""


class UsageError(SessionizerError):
    pass


class Parser(argparse.ArgumentParser):
    """argparse, with its usage errors on one line (exit 2, as argparse does)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _users(spec: str) -> list[str]:
    """``a,b,c``, or ``@FILE`` (one user a line, or comma separated), ``@-`` for standard input."""
    if spec.startswith("@"):
        try:
            text = sys.stdin.read() if spec == "@-" else open(spec[1:], encoding="utf-8").read()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise argparse.ArgumentTypeError(f"cannot read the users file {spec[1:]!r}: {reason}") from None
    else:
        text = spec
    users = [u.strip() for u in text.replace("\n", ",").split(",") if u.strip()]
    if not users:
        raise argparse.ArgumentTypeError(f"no user in {spec!r}")
    return users


def _url(value: str | None) -> str:
    """The service URL; ``host:port`` alone means ``http://host:port``."""
    url = (value or os.environ.get("SESSIONIZER_URL") or DEFAULT_URL).strip()
    return url if "://" in url else f"http://{url}"


def _param(spec: str) -> tuple[str, Any]:
    """``k=v``: ``v`` as JSON when it reads as JSON (numbers, true/false, null), else as a string."""
    key, sep, value = spec.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {spec!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[IO[bytes]]:
    if path is None:
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
    else:
        with atomic_file(path) as fh:
            yield fh


def _table(rows: list[list[str]], columns: list[str], path: str | None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(*columns, show_edge=False)
    for row in rows:
        table.add_row(*row)

    class Piped(Console):
        def on_broken_pipe(self) -> None:  # rich would exit 1; a closed pipe is no failure (main())
            self.quiet = True
            raise BrokenPipeError

    if path is None:
        console = Piped()
        if not console.is_terminal:  # piped: whole values, not cut at an assumed 80 columns
            console = Piped(width=250)
        console.print(table)
    else:
        with open(path, "w", encoding="utf-8") as fh:
            Console(file=fh, width=250, no_color=True).print(table)


def _session_row(s: Session) -> list[str]:
    flags = ("<" if s.truncated_start else "") + (">" if s.truncated_end else "")
    return [
        s.user,
        s.instance,
        format_time(s.start),
        format_time(s.end),
        f"{s.duration_s:.0f}",
        str(s.events),
        s.entry_screen,
        s.exit_screen,
        flags,
        s.split_reason or "",
    ]


def check_output(fmt: str, path: str | None) -> None:
    """Refuse, before any request, an output the sessions could not be written to."""
    if fmt == "parquet":
        if path is None:
            raise UsageError("--format parquet needs -o FILE")
        from . import frames  # noqa: F401  (ImportError: how to install the pandas extra)
    if path is not None:
        folder = os.path.dirname(os.path.abspath(path))
        if os.path.isdir(path):
            raise UsageError(f"-o {path}: is a directory")
        if not os.path.isdir(folder):
            raise UsageError(f"-o {path}: no such directory {folder}")
        if not os.access(folder, os.W_OK):
            raise UsageError(f"-o {path}: the directory {folder} is not writable")


def write_sessions(job: Job, fmt: str, path: str | None) -> None:
    """The job's sessions in ``fmt``, to ``path`` or standard output, streamed where the format allows."""
    check_output(fmt, path)
    if fmt == "parquet":
        assert path is not None  # check_output refused parquet without -o
        job.to_parquet(path)
    elif fmt == "csv":
        with _output(path) as out:
            for chunk in job._iter_bytes(CSV):
                out.write(chunk)
    elif fmt in ("ndjson", "json"):
        with _output(path) as out:
            first = True
            out.write(b"[" if fmt == "json" else b"")
            for row in job._rows():
                line = json.dumps(row).encode()
                if fmt == "json":
                    line = (b"\n" if first else b",\n") + line
                out.write(line + (b"\n" if fmt == "ndjson" else b""))
                first = False
            out.write(b"\n]\n" if fmt == "json" else b"")
    else:
        rows = [_session_row(s) for s in job.sessions()]
        columns = [
            "user",
            "instance",
            "start",
            "end",
            "duration_s",
            "events",
            "entry_screen",
            "exit_screen",
            "truncated",
            "split_reason",
        ]
        _table(rows, columns, path)


def _wait(job: Job) -> Job:
    """Wait with a progress bar on a terminal (none when standard error is not one)."""
    try:
        return job.wait(progress=sys.stderr.isatty())
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: job {job.id} goes on (last seen {job.status}). Resume with:\n"
            f"  sessionizer wait {job.id}\n  sessionizer sessions {job.id}",
            file=sys.stderr,
        )
        raise SystemExit(130) from None


def _client(args: argparse.Namespace) -> Client:
    return Client(
        _url(args.url), args.api_key, timeout=args.timeout, retry=RetryPolicy(attempts=max(1, args.retries + 1))
    )


def cmd_submit(args: argparse.Namespace) -> int:
    if not args.wait and (args.output or args.format != "table"):
        raise UsageError("--format and -o apply to the sessions: add --wait (or use: sessionizer sessions ID)")
    if args.wait:
        check_output(args.format, args.output)  # before submitting: a refused output must not leave a job behind
    group_by = ["user", "instance"] if args.group_by_instance else None
    with _client(args) as client:
        job = client.submit(
            args.users,
            args.start,
            args.end,
            method=args.method,
            params=dict(args.param or []),
            group_by=group_by,
            fresh=args.fresh,
            idempotency_key=args.idempotency_key,
        )
        if not args.wait:
            print(job.id)
            print(f"submitted job {job.id} ({job.status}); wait for it: sessionizer wait {job.id}", file=sys.stderr)
            return 0
        write_sessions(_wait(job), args.format, args.output)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        print(json.dumps(client.job(args.id).data, indent=2))
    return 0


def cmd_wait(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = _wait(client.job(args.id))
        print(f"{job.id} {job.status}")
    return 0


def cmd_sessions(args: argparse.Namespace) -> int:
    check_output(args.format, args.output)
    with _client(args) as client:
        write_sessions(client.job(args.id), args.format, args.output)
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    with _client(args) as client:
        jobs = client.jobs(status=args.status)
        if args.format == "ndjson":
            for job in jobs:
                print(json.dumps(job.data))
            return 0
        rows = []
        for job in jobs:
            record = job.record
            req, p = record.request, record.progress
            users = ",".join(req.users) if req else ""
            rows.append(
                [
                    record.id,
                    record.status,
                    users if len(users) <= 30 else users[:29] + "…",
                    format_time(req.start) if req else "",
                    format_time(req.end) if req else "",
                    f"{p.users_done}/{p.users_total}",
                    format_time(record.submitted_at) if record.submitted_at else "",
                ]
            )
        _table(rows, ["id", "status", "users", "start", "end", "done", "submitted_at"], None)
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = client.job(args.id).cancel()
        print(f"{job.id} {job.status}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    with _client(args) as client:
        client.job(args.id).delete()
        print(f"{args.id} deleted")
    return 0


def build_parser() -> argparse.ArgumentParser:
    common = Parser(add_help=False)
    common.add_argument(
        "--url",
        help="service URL, http:// assumed when no scheme is given "
        "(default: $SESSIONIZER_URL, else http://127.0.0.1:8000)",
    )
    common.add_argument("--api-key", help="API key (default: $SESSIONIZER_API_KEY)")
    common.add_argument("--timeout", type=float, default=30.0, help="seconds per HTTP request (default 30)")
    common.add_argument(
        "--retries",
        type=int,
        default=5,
        metavar="N",
        help="retries of a request on connection errors, 429, 502/503/504 (default 5)",
    )
    out = Parser(add_help=False)
    out.add_argument("--format", choices=FORMATS, default="table", help="sessions as (default table)")
    out.add_argument("-o", "--output", metavar="FILE", help="write to FILE (required for parquet)")

    parser = Parser(
        prog="sessionizer", description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    def add(name: str, func: Any, help: str, parents: list[Parser]) -> Parser:
        p = sub.add_parser(
            name,
            help=help,
            description=help,
            parents=[common, *parents],
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.set_defaults(func=func)
        return p

    p = add("submit", cmd_submit, "submit a job (prints its id), or with --wait wait and print its sessions", [out])
    p.add_argument("--users", required=True, type=_users, help="a,b,c or @FILE (one a line; @- = stdin)")
    p.add_argument("--start", required=True, help="range start, ISO-8601 (no offset = UTC)")
    p.add_argument("--end", required=True, help="range end, ISO-8601")
    p.add_argument("--method", choices=("hdbscan", "gap"), help="default hdbscan")
    p.add_argument(
        "--param",
        action="append",
        type=_param,
        metavar="KEY=VALUE",
        help="a method parameter, e.g. max_gap_s=900 (repeatable)",
    )
    p.add_argument("--group-by-instance", action="store_true", help="sessions per user and instance")
    p.add_argument("--fresh", action="store_true", help="run afresh (Cache-Control: no-cache)")
    p.add_argument("--idempotency-key", help="default: a new random key (a retried submit never runs twice)")
    p.add_argument("--wait", action="store_true", help="wait for the job, then print its sessions")
    for name, func, text in (
        ("status", cmd_status, "print a job's state as JSON"),
        ("wait", cmd_wait, "wait for a job (progress bar on a terminal); exit 1 if it failed"),
        ("cancel", cmd_cancel, "cancel a job"),
        ("delete", cmd_delete, "cancel if running, then forget a job and its sessions"),
    ):
        add(name, func, text, []).add_argument("id", help="job id")
    add("sessions", cmd_sessions, "print or save a finished job's sessions", [out]).add_argument("id", help="job id")
    p = add("jobs", cmd_jobs, "list your jobs, newest first", [])
    p.add_argument("--status", choices=("queued", "running", "succeeded", "failed", "cancelled"))
    p.add_argument("--format", choices=("table", "ndjson"), default="table")
    return parser


def _problem(exc: APIError) -> str:
    text = f"error: {exc}"
    if isinstance(exc, InvalidRequest):
        for name, messages in exc.errors.items():
            said = " ".join(map(str, messages)) if isinstance(messages, list) else json.dumps(messages)
            text += f"\n  {name}: {said}"
    return text


def _quiet_closed_pipe() -> int:
    """The reader went away (``| head``): stop quietly, as Unix tools do. Standard output is pointed
    at /dev/null so the interpreter's last flush does not complain again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 0


def _os_error(exc: OSError) -> str:
    """An OS error on the user's file, named as they gave it (never the temporary ``.part``)."""
    name = exc.filename
    if isinstance(name, str) and name.endswith(".part"):
        name = name[: -len(".part")]
    return f"error: {name}: {exc.strerror}" if name and exc.strerror else f"error: {exc}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = int(args.func(args))
        sys.stdout.flush()  # here, where a closed pipe can still be told apart, not at exit
        return code
    except BrokenPipeError:
        return _quiet_closed_pipe()
    except JobError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (ConnectionFailed, ServiceUnavailable) as exc:
        print(f"error: the service could not be reached: {exc}", file=sys.stderr)
        return 3
    except APIError as exc:
        print(_problem(exc), file=sys.stderr)
        return 2
    except OSError as exc:
        print(_os_error(exc), file=sys.stderr)
        return 2
    except (UsageError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
