"""Configuration: defaults, environment, credentials file; secrets never print."""

from __future__ import annotations

from pathlib import Path

from worker.settings import load_settings


def test_defaults_then_environment() -> None:
    s = load_settings({})
    assert s["elasticsearch"]["index"] == "usage-events" and s.source_kind == "file"
    assert s["jobs"]["ttl_s"] == 86400 and s["jobs"]["max_range_days"] == 366
    s = load_settings({"ELASTICSEARCH_URL": "http://es:9200", "JOB_TTL_S": "60", "FIELD_USER": "user"})
    assert s.source_kind == "elasticsearch" and s["jobs"]["ttl_s"] == 60 and s["source"]["user_field"] == "user"
    assert load_settings({"ELASTICSEARCH_URL": "http://es:9200", "EVENT_SOURCE": "file"}).source_kind == "file"


def test_credentials_from_file_or_environment_never_print(tmp_path: Path) -> None:
    cred = tmp_path / "credentials.yml"
    cred.write_text("ELASTICSEARCH_API_KEY: s3cr3t-key\n")
    s = load_settings({"SESSIONIZER_CREDENTIALS": str(cred)})
    assert s.secrets["elasticsearch_api_key"].value == "s3cr3t-key"
    assert "s3cr3t" not in repr(s) and "s3cr3t" not in str(s.secrets)
    s = load_settings({"SESSIONIZER_CREDENTIALS": str(cred), "ELASTICSEARCH_API_KEY": "from-env"})
    assert s.secrets["elasticsearch_api_key"].value == "from-env"


def test_credentials_file_is_git_ignored() -> None:
    ignored = (Path(__file__).parent.parent / ".gitignore").read_text().split()
    assert "config/credentials.yml" in ignored
