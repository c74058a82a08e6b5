"""gunicorn's access log without secrets: query strings and credentials are never written.

API keys are accepted only in the ``Authorization`` header, but a client may still put one in a
query string (``?api_key=...``) or a referring URL; whatever the configured format, the query is
replaced by ``?<redacted>`` and credential headers are never available to it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from gunicorn.glogging import Logger

REDACTED = "<redacted>"
# header atoms ({name}i) and environ atoms ({name}e) a format could name, that may hold secrets
SECRET_ATOMS = (
    "{authorization}i",
    "{proxy-authorization}i",
    "{cookie}i",
    "{x-api-key}i",
    "{http_authorization}e",
    "{http_proxy_authorization}e",
    "{http_cookie}e",
    "{http_x_api_key}e",
)


def redact_url(url: str) -> str:
    """``/jobs?api_key=s3cret`` -> ``/jobs?<redacted>``; user info in an absolute URL goes too."""
    if not url or url == "-":
        return url
    try:
        parts = urlsplit(url)
    except ValueError:  # not a URL at all (e.g. an invalid port in a referer): keep nothing of it
        return REDACTED
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, REDACTED if parts.query else "", ""))


class RedactingLogger(Logger):
    """gunicorn's logger whose access-log atoms carry no query string and no credential, and whose
    lines have the project's format (``LOG_FORMAT``: text, or one JSON object a line), with the
    request id of the request they are about."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        # the settings and the log formats are standard library (+ python-json-logger): safe to
        # import before the gevent patch
        from sessionizer.logs import restyle
        from sessionizer.settings import get_settings

        restyle(self.error_log, self.access_log, settings=get_settings())

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> dict[str, Any]:
        atoms = super().atoms(resp, req, environ, request_time)
        uri = redact_url(environ.get("RAW_URI") or "")
        atoms["r"] = f"{environ.get('REQUEST_METHOD')} {uri} {environ.get('SERVER_PROTOCOL')}"
        atoms["q"] = REDACTED if atoms.get("q") else ""
        atoms["f"] = redact_url(atoms.get("f") or "-")
        atoms["u"] = "-"  # gunicorn decodes HTTP Basic credentials into the user name
        for name in ("{referer}i", "{raw_uri}e", "{request_uri}e"):
            if name in atoms:
                atoms[name] = redact_url(str(atoms[name]))
        if "{query_string}e" in atoms:
            atoms["{query_string}e"] = REDACTED if atoms["{query_string}e"] else ""
        for name in SECRET_ATOMS:
            if name in atoms:
                atoms[name] = REDACTED
        return atoms
