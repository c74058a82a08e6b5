"""Configuration: defaults, environment, credentials file; secrets never print."""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime
from pathlib import Path

import pytest

from sessionizer.settings import ROOT, load_settings


def test_defaults_then_environment() -> None:
    s = load_settings({})
    assert s.elasticsearch.index == "usage-events" and s.source_kind == "file"
    assert s.jobs.ttl_s == 86400 and s.jobs.max_range_days == 366
    s = load_settings({"ELASTICSEARCH_URL": "http://es:9200", "JOB_TTL_S": "60", "FIELD_USER": "user"})
    assert s.source_kind == "elasticsearch" and s.jobs.ttl_s == 60 and s.source.user_field == "user"
    assert load_settings({"ELASTICSEARCH_URL": "http://es:9200", "EVENT_SOURCE": "file"}).source_kind == "file"


def test_credentials_from_file_or_environment_never_print(tmp_path: Path) -> None:
    cred = tmp_path / "credentials.yml"
    cred.write_text("ELASTICSEARCH_API_KEY: s3cr3t-key\n")
    s = load_settings({"SESSIONIZER_CREDENTIALS": str(cred)})
    assert s.elasticsearch.api_key is not None and s.elasticsearch.api_key.value == "s3cr3t-key"
    assert "s3cr3t" not in repr(s) and "s3cr3t" not in str(s) and "s3cr3t" not in f"{s.elasticsearch}"
    s = load_settings({"SESSIONIZER_CREDENTIALS": str(cred), "ELASTICSEARCH_API_KEY": "from-env"})
    assert s.elasticsearch.api_key.value == "from-env"


def test_credentials_file_is_git_ignored() -> None:
    ignored = (Path(__file__).parent.parent / ".gitignore").read_text().split()
    assert "config/credentials.yml" in ignored


def test_settings_are_frozen_and_typed() -> None:
    s = load_settings({"MAX_WAIT_S": "2", "AUTH_REQUIRED": "yes", "ELASTICSEARCH_VERIFY_CERTS": "false"})
    assert s.limits.max_wait_s == 2.0 and isinstance(s.limits.max_wait_s, float)
    assert s.auth.required is True and s.elasticsearch.verify_certs is False
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.limits.max_wait_s = 3  # type: ignore[misc]


def test_overrides_replace_the_one_object_as_create_app_does(redis_url: str) -> None:
    from webapp import create_app

    app = create_app({"TESTING": True, "REDIS_URL": redis_url, "JOB_DEADLINE_S": 42, "MAX_WAIT_S": 1})
    settings = app.extensions["sessionizer"].settings
    assert settings.redis.url == redis_url and settings.limits.max_wait_s == 1.0
    # the deadline a submitted job gets comes from the same object (it used to read the defaults)
    job = (
        app.test_client()
        .post("/jobs", json={"users": ["a"], "start": "2022-09-22T00:00Z", "end": "2022-09-23T00:00Z"})
        .get_json()
    )
    submitted, deadline = (datetime.fromisoformat(job[k]) for k in ("submitted_at", "deadline_at"))
    assert (deadline - submitted).total_seconds() == pytest.approx(42, abs=1)
    assert "TESTING" in app.config and "REDIS_URL" not in app.config


def test_unknown_settings_in_the_defaults_file_are_refused(tmp_path: Path) -> None:
    (tmp_path / "defaults.toml").write_text((ROOT / "config" / "defaults.toml").read_text() + "\n[limits2]\nx = 1\n")
    assert load_settings({"SESSIONIZER_CONFIG_DIR": str(tmp_path)}).jobs.ttl_s == 86400  # unknown sections are ignored
    (tmp_path / "defaults.toml").write_text(
        (ROOT / "config" / "defaults.toml").read_text().replace("[limits]\n", "[limits]\nrate_per_sec = 1\n")
    )
    with pytest.raises(ValueError, match="rate_per_sec"):
        load_settings({"SESSIONIZER_CONFIG_DIR": str(tmp_path)})


def test_no_module_but_the_settings_reads_the_environment() -> None:
    readers = []
    for package in ("sessionizer", "webapp", "worker"):
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text()
            if re.search(r"os\.environ|getenv\(", text) and path != ROOT / "sessionizer" / "settings.py":
                readers.append(str(path.relative_to(ROOT)))
    assert readers == []
