"""The API's extensions: the flask-smorest ``Api``, the job store and the Celery sender."""

from __future__ import annotations

from dataclasses import dataclass

from celery import Celery
from flask import Flask, current_app
from flask_smorest import Api

from worker.jobstore import JobStore

from .errors import ProblemApi

api: Api = ProblemApi()


@dataclass
class Services:
    store: JobStore
    celery: Celery


def init_services(app: Flask) -> None:
    from dataclasses import replace

    from worker.celery_app import make_celery

    settings = app.config["SESSIONIZER"]
    redis_cfg = dict(settings["redis"], url=app.config["REDIS_URL"])
    settings = replace(settings, data={**settings.data, "redis": redis_cfg})
    app.extensions["sessionizer"] = Services(
        store=JobStore.from_url(app.config["REDIS_URL"], app.config["JOB_TTL_S"]),
        celery=make_celery(settings),
    )


def services() -> Services:
    return current_app.extensions["sessionizer"]
