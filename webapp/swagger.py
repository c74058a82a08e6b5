"""Swagger UI's static files, from the ``swagger-ui-bundle`` wheel (no CDN needed)."""

from __future__ import annotations

from pathlib import Path

import swagger_ui_bundle
from flask import Blueprint

_ASSETS = Path(swagger_ui_bundle.swagger_ui_path)
bp = Blueprint("swagger_assets", __name__, static_folder=str(_ASSETS), static_url_path="/docs/static")
