"""Operators watch the queue in Flower: each unit shows as a named task with readable arguments."""

from __future__ import annotations

import base64
import json
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from devstack import ROOT, flower_command, free_port, wait_http
from tests.helpers import wait_finished

pytestmark = pytest.mark.slow  # real Celery worker subprocesses


def authorized(url: str) -> urllib.request.Request:
    return urllib.request.Request(url, headers={"Authorization": "Basic " + base64.b64encode(b"ops:s3cret").decode()})


def test_flower_shows_each_unit_with_its_arguments(file_worker, worker_client, tmp_path) -> None:
    port = free_port()
    with open(tmp_path / "flower.log", "wb") as log:
        flower = subprocess.Popen(
            flower_command("127.0.0.1", port, basic_auth="ops:s3cret"),
            cwd=ROOT,
            env=file_worker.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthcheck", timeout=60)
        with pytest.raises(urllib.error.HTTPError) as refused:  # basic auth is on
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/tasks", timeout=5)
        assert refused.value.code == 401
        refused.value.close()
        time.sleep(1.0)  # let Flower subscribe to the task events before the job runs
        job_id = worker_client.post(
            "/jobs",
            json={
                "users": ["romain", "claire"],
                "start": "2022-09-20T00:00Z",
                "end": "2022-09-30T00:00Z",
                "method": "gap",
            },
        ).get_json()["id"]
        assert wait_finished(worker_client, job_id)["status"] == "succeeded"
        deadline = time.monotonic() + 30
        while True:
            with urllib.request.urlopen(authorized(f"http://127.0.0.1:{port}/api/tasks"), timeout=5) as resp:
                tasks = json.loads(resp.read())
            units = [
                t for t in tasks.values() if t.get("name") == "sessionizer.unit" and job_id in (t.get("args") or "")
            ]
            # the last unit marks the job succeeded inside its task body, so Flower may hear of
            # its task-succeeded event a moment after the job reads succeeded: wait for both
            # one unit per user, or both users in one (units are sized by work once the event
            # store knows their counts): each user in exactly one unit
            args = " ".join(t["args"] for t in units)
            covered = args.count("'romain'") == 1 and args.count("'claire'") == 1
            if (covered and all(t["state"] == "SUCCESS" for t in units)) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert covered and 1 <= len(units) <= 2, tasks
        assert all(t["state"] == "SUCCESS" for t in units)
        plans = [t for t in tasks.values() if t.get("name") == "sessionizer.plan" and job_id in (t.get("args") or "")]
        assert len(plans) == 1
    finally:
        flower.terminate()
        flower.wait(30)
