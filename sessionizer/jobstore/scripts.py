"""The store's Lua scripts (``scripts/*.lua``, package data), loaded with ``importlib.resources``
and registered on a client. Each script starts with :func:`keys.lua_preamble`, so key names and
statuses are spelled in one place."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

import redis
from redis.commands.core import Script

from .keys import lua_preamble


@cache
def source(name: str) -> str:
    """The text of ``scripts/<name>.lua`` with the preamble."""
    body = resources.files(__package__).joinpath("scripts", f"{name}.lua").read_text(encoding="utf-8")
    return lua_preamble() + body


@dataclass(frozen=True)
class Scripts:
    """Every script, registered on one client (redis-py runs them by SHA, loading on a miss)."""

    transition: Script
    submit: Script
    view: Script
    cancel: Script
    delete: Script
    admit: Script
    idempotency: Script
    wait_slot: Script
    unit_progress: Script
    complete_unit: Script
    hook_enqueue: Script  # the completion pushes' steps (sessionizer/jobstore/deliveries.py)
    hook_claim: Script
    hook_record: Script
    hook_redeliver: Script
    lease_acquire: Script
    lease_renew: Script
    lease_release: Script

    @classmethod
    def register(cls, client: redis.Redis) -> Scripts:
        return cls(**{name: client.register_script(source(name)) for name in cls.__dataclass_fields__})
