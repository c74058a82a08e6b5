"""Structured logs: one JSON object a line with the context fields, a request id on every answer,
and no secret in any line (URL credentials and configured secrets masked)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from sessionizer import logs


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """The root logger writing into a buffer; the test's own logging restored afterwards."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    logs.clear_context()  # a request served earlier in this thread left its ids (as a server's thread does)
    buf = io.StringIO()
    yield buf
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    logs.clear_context()


def test_json_lines_carry_time_level_logger_message_and_context(captured: io.StringIO) -> None:
    logs.configure("json", "INFO", stream=captured)
    log = logging.getLogger("sessionizer.test")
    with logs.bind(request_id="rid-1", job_id="job-1", unit=3):
        log.info("unit %s of %s", 3, "job-1")
    log.warning("no context\nsecond line")
    first, second = [json.loads(line) for line in captured.getvalue().splitlines()]
    assert first["level"] == "INFO" and first["logger"] == "sessionizer.test" and first["message"] == "unit 3 of job-1"
    assert (first["request_id"], first["job_id"], first["unit"]) == ("rid-1", "job-1", 3)
    assert first["time"].endswith("+00:00")
    assert second["message"] == "no context\nsecond line" and "request_id" not in second  # one line, escaped


def test_text_lines_name_the_context(captured: io.StringIO) -> None:
    logs.configure("text", "INFO", stream=captured)
    with logs.bind(request_id="rid-2", job_id="job-2"):
        logging.getLogger("x").info("hello")
    assert captured.getvalue().rstrip().endswith("INFO x request_id=rid-2 job_id=job-2: hello")


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_secrets_are_masked_whatever_the_format(captured: io.StringIO, fmt: str) -> None:
    logs.configure(fmt, "INFO", secrets=["es-key-7f3a9c"], stream=captured)
    log = logging.getLogger("x")
    log.error("connect redis://:hunter2-pw@redis:6379/0 failed; key %s", "es-key-7f3a9c")
    try:
        raise ConnectionError("amqp://user:pa55word@broker//")
    except ConnectionError:
        log.exception("with a traceback")
    out = captured.getvalue()
    assert "hunter2-pw" not in out and "es-key-7f3a9c" not in out and "pa55word" not in out
    assert "redis://:***@redis:6379/0" in out and "amqp://user:***@broker//" in out


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        logs.configure("xml")


def test_the_api_takes_or_makes_a_request_id(client) -> None:
    given = client.get("/healthz", headers={"X-Request-ID": "trace-42.a_b"})
    assert given.headers["X-Request-ID"] == "trace-42.a_b"
    made = client.get("/healthz", headers={"X-Request-ID": "bad id\twith junk" + "x" * 200})
    assert len(made.headers["X-Request-ID"]) == 32 and made.headers["X-Request-ID"] != given.headers["X-Request-ID"]
    assert client.get("/jobs/nope").headers["X-Request-ID"]  # errors too
