"""WSGI entry point: ``gunicorn webapp.wsgi:app`` (``config/gunicorn.conf.py`` names it).

The server process's logging is set here, not in ``create_app``: tests build many apps in one
process and keep their own logging."""

from sessionizer import logs
from sessionizer.settings import get_settings
from webapp import create_app

logs.configure_from(get_settings())
app = create_app()
