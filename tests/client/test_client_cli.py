"""The ``sessionizer`` command through subprocesses: exit codes, every format, files pandas reads
back, the progress bar under a pseudo-terminal (and none when piped), Ctrl-C while waiting."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from sessionizer_client import Client

from .conftest import END, KEYS, START, USERS

pytestmark = pytest.mark.slow  # a real Redis, Celery worker and gunicorn servers (conftest.py)

SESSIONIZER = str(Path(sys.executable).parent / "sessionizer")  # the installed console script


def run(*args: str, url: str, key: str | None = None, check: int | None = 0) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONIZER_")}
    env["SESSIONIZER_URL"] = url
    if key:
        env["SESSIONIZER_API_KEY"] = key
    out = subprocess.run([SESSIONIZER, *args], env=env, capture_output=True, text=True, timeout=120)
    if check is not None:
        assert out.returncode == check, (out.returncode, out.stdout, out.stderr)
    return out


def submit_args(*extra: str) -> list[str]:
    return ["submit", "--users", ",".join(USERS), "--start", START, "--end", END, *extra]


def test_submit_wait_in_every_format_reads_back(client_stack, tmp_path) -> None:
    url, key = client_stack.api, KEYS["cli"]
    job_id = run(*submit_args("--method", "gap", "--param", "max_gap_s=900"), url=url, key=key).stdout.strip()
    assert run("wait", job_id, url=url, key=key).stdout.split() == [job_id, "succeeded"]
    with Client(url, key) as client:
        expected = client.job(job_id).to_pandas()
        assert client.job(job_id).request["params"]["max_gap_s"] == 900
    users = list(expected["user"].astype(str))

    for fmt, read in (
        ("csv", lambda p: pd.read_csv(p, dtype={"user": str})),
        ("ndjson", lambda p: pd.read_json(p, lines=True, dtype={"user": str})),
        ("json", lambda p: pd.read_json(p, dtype={"user": str})),
        ("parquet", pd.read_parquet),
    ):
        path = tmp_path / f"s.{fmt}"
        run("sessions", job_id, "--format", fmt, "-o", str(path), url=url, key=key)
        frame = read(path)
        assert list(frame["user"].astype(str)) == users, fmt
        assert list(frame["events"]) == list(expected["events"]), fmt
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "s.parquet"), expected)

    piped = run("sessions", job_id, "--format", "ndjson", url=url, key=key).stdout.splitlines()
    assert [json.loads(line)["user"] for line in piped] == users
    assert (
        run("sessions", job_id, "--format", "csv", url=url, key=key).stdout.splitlines()[0].startswith("user,instance,")
    )
    table = run("sessions", job_id, url=url, key=key).stdout
    assert all(u in table for u in USERS) and "entry_screen" in table

    waited = run(
        *submit_args("--wait", "--group-by-instance", "--format", "csv", "-o", str(tmp_path / "w.csv")),
        url=url,
        key=key,
    )
    assert waited.stdout == "" and len(pd.read_csv(tmp_path / "w.csv")) == len(expected)
    status = json.loads(run("status", job_id, url=url, key=key).stdout)
    assert status["id"] == job_id and status["status"] == "succeeded"
    listed = run("jobs", "--status", "succeeded", "--format", "ndjson", url=url, key=key).stdout.splitlines()
    assert job_id in [json.loads(line)["id"] for line in listed]
    assert job_id in run("jobs", url=url, key=key).stdout


def test_cancel_delete_and_exit_codes(client_stack, tmp_path) -> None:
    idle = client_stack.idle
    job_id = run(*submit_args(), url=idle).stdout.strip()  # no worker there: it stays queued
    assert run("cancel", job_id, url=idle).stdout.split() == [job_id, "cancelled"]
    cancelled = run("wait", job_id, url=idle, check=1)
    assert "cancelled" in cancelled.stderr
    assert run("delete", job_id, url=idle).returncode == 0
    assert "404" in run("status", job_id, url=idle, check=2).stderr

    failed = run("wait", run(*submit_args(), url=client_stack.doomed).stdout.strip(), url=client_stack.doomed, check=1)
    assert "deadline" in failed.stderr  # the service's reason

    invalid = run(
        "submit", "--users", "a,a", "--start", END, "--end", START, url=client_stack.api, key=KEYS["cli"], check=2
    )
    assert "users:" in invalid.stderr and "end:" in invalid.stderr
    assert run("status", "x", url=client_stack.api, key="not-a-key", check=2).stderr.startswith("error: 401")
    assert run("submit", "--users", "a", url=client_stack.api, check=2).stderr  # argparse: --start missing
    assert run("sessions", job_id, "--format", "parquet", url=idle, check=2).stderr  # parquet needs -o
    assert "--wait" in run(*submit_args("-o", str(tmp_path / "x.csv")), url=idle, check=2).stderr
    users_file = tmp_path / "users.txt"
    users_file.write_text("ana\nben\n")
    via_file = run(
        "submit",
        "--users",
        f"@{users_file}",
        "--start",
        START,
        "--end",
        END,
        "--url",
        client_stack.api,
        "--api-key",
        KEYS["cli"],
        url="http://127.0.0.1:9",
    )  # --url/--api-key win over the environment
    with Client(client_stack.api, KEYS["cli"]) as client:
        assert client.job(via_file.stdout.strip()).request["users"] == ["ana", "ben"]
    unreachable = run("status", "x", "--retries", "1", url=f"http://127.0.0.1:{free_port_()}", check=3)
    assert "could not be reached" in unreachable.stderr


def free_port_() -> int:
    from devstack import free_port

    return free_port()


def in_pty(
    args: list[str], env: dict[str, str], until: bytes | None = None, interrupt: bool = False, timeout: float = 90
) -> tuple[int, bytes]:
    """Run under a pseudo-terminal (stdout and stderr); SIGINT it once ``until`` has been shown."""
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(args, env=env, stdin=secondary, stdout=secondary, stderr=secondary, close_fds=True)
    os.close(secondary)
    out = b""
    deadline = time.monotonic() + timeout
    sent = False
    while time.monotonic() < deadline:
        ready, _, _ = select.select([primary], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # the child has gone and closed the terminal
                break
            if not chunk:
                break
            out += chunk
        if interrupt and not sent and until and until in out:
            proc.send_signal(signal.SIGINT)
            sent = True
        if proc.poll() is not None and not ready:
            break
    os.close(primary)
    return proc.wait(timeout=30), out


def tty_env(url: str, key: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONIZER_")}
    env.update({"SESSIONIZER_URL": url, "TERM": "xterm-256color", "COLUMNS": "160"})
    if key:
        env["SESSIONIZER_API_KEY"] = key
    return env


def test_progress_bar_on_a_terminal_and_none_when_piped(client_stack, tmp_path) -> None:
    url, key = client_stack.api, KEYS["cli"]
    code, out = in_pty(
        [SESSIONIZER, *submit_args("--fresh", "--wait", "--format", "csv", "-o", str(tmp_path / "t.csv"))],
        tty_env(url, key),
    )
    assert code == 0, out
    text = out.decode(errors="replace")
    assert (
        "━" in text
        and "users" in text
        and f"{len(USERS)}/{len(USERS)}" in text
        and "events scanned" in text
        and "from the source" in text
    )
    piped = run(*submit_args("--fresh", "--wait", "--format", "csv", "-o", str(tmp_path / "p.csv")), url=url, key=key)
    assert "━" not in piped.stderr and "\x1b[" not in piped.stderr and "users" not in piped.stderr


def test_ctrl_c_while_waiting_leaves_the_job_and_says_how_to_resume(client_stack) -> None:
    idle = client_stack.idle
    job_id = run(*submit_args(), url=idle).stdout.strip()
    code, out = in_pty([SESSIONIZER, "wait", job_id], tty_env(idle), until=b"users", interrupt=True)
    text = out.decode(errors="replace")
    assert code == 130, text
    assert f"sessionizer wait {job_id}" in text and "Traceback" not in text
    with Client(idle) as client:
        assert client.job(job_id).status == "queued"  # still there, not cancelled


def test_a_closed_pipe_ends_quietly_and_the_part_name_never_shows(client_stack, tmp_path) -> None:
    url, key = client_stack.api, KEYS["cli"]
    run(*submit_args("--wait", "--format", "csv", "-o", str(tmp_path / "s.csv")), url=url, key=key)
    job_id = json.loads(run("jobs", "--format", "ndjson", url=url, key=key).stdout.splitlines()[0])["id"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONIZER_")}
    env.update(SESSIONIZER_URL=url.removeprefix("http://"), SESSIONIZER_API_KEY=key)  # no scheme: http:// assumed
    for args in (
        ["sessions", job_id, "--format", "ndjson"],
        ["sessions", job_id, "--format", "json"],
        ["sessions", job_id, "--format", "csv"],
        ["sessions", job_id],
        ["status", job_id],
        ["jobs"],
        ["jobs", "--format", "ndjson"],
    ):
        # the reader has gone before the first byte is written (as `| head` has after its lines):
        # every write meets a closed pipe, whatever the size of the output
        read, write = os.pipe()
        os.close(read)
        proc = subprocess.run(
            [SESSIONIZER, *args], env=env, stdout=write, stderr=subprocess.PIPE, text=True, timeout=60
        )
        os.close(write)
        assert (proc.returncode, proc.stderr) == (0, ""), args
    shell = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {SESSIONIZER} sessions {job_id} --format ndjson | head -1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shell.returncode == 0 and json.loads(shell.stdout)["user"] in USERS and shell.stderr == ""

    (tmp_path / "taken.csv.part").mkdir()  # the temporary file cannot be made: the error names the user's file
    taken = run("sessions", job_id, "--format", "csv", "-o", str(tmp_path / "taken.csv"), url=url, key=key, check=2)
    assert str(tmp_path / "taken.csv") in taken.stderr and ".part" not in taken.stderr, taken.stderr
    assert len(taken.stderr.strip().splitlines()) == 1
