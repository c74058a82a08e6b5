"""The web page at ``/``: the project's own HTML, CSS and JavaScript modules, no build step, no CDN.

The page talks to the API like any client (``fetch``, ``Authorization: Bearer`` when keys are on).
It reads the submit form's fields and defaults from ``/openapi.json``, so the method parameters are
documented there too (:func:`document_method_params`), with the defaults the core applies
(declared once in ``sessionizer/methods.py``).
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response, render_template
from flask_smorest import Api

from .extensions import services
from .jobs.params import PARAMS_SCHEMAS

bp = Blueprint(
    "page",
    __name__,
    static_folder="static/page",
    static_url_path="/page/static",
    template_folder="templates",
)

# Only the page's own files: a CDN or an injected script would be refused by the browser.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def auth_mode() -> str:
    """``required``, ``optional`` (keys configured, anonymous allowed) or ``off``: the page asks
    for a key before its first request only when one is required."""
    svc = services()
    if svc.settings.auth.required:
        return "required"
    return "optional" if svc.key_digests else "off"


@bp.get("/")
def index() -> Response:
    """The page (jobs, submit form, a job's timeline); everything else is fetched from the API."""
    html = render_template("page/index.html", auth=auth_mode())
    return Response(
        html,
        mimetype="text/html",
        headers={
            "Content-Security-Policy": CSP,
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
        },
    )


def register_framing_policy(app: Flask) -> None:
    """No answer of this app may be framed by another site: ``/docs``, where a key is typed, as
    the page (whose own CSP says ``frame-ancestors 'none'`` among the rest). Swagger UI's page
    keeps its inline script, so only the framing directive is added where no policy is set."""

    @app.after_request
    def framing(response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy", "frame-ancestors 'none'")
        response.headers.setdefault("X-Frame-Options", "DENY")
        return response


@bp.after_request
def static_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response


def params_schema_name(method: str) -> str:
    """``hdbscan`` -> ``HdbscanParams``, as ``JobArgs.params`` names them."""
    return f"{method.capitalize()}Params"


def document_method_params(api: Api, app: Flask) -> None:
    """Add ``HdbscanParams`` and ``GapParams`` to the OpenAPI components (``JobArgs.params`` is a
    free-form object), each property with its bounds and the default the core applies, so clients
    (the page's form first) show the defaults that will really apply."""
    for method, schema in PARAMS_SCHEMAS.items():
        name = params_schema_name(method)
        if name not in api.spec.components.schemas:
            api.spec.components.schema(name, schema=schema)
