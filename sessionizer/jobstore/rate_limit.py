"""Admission: the per-key rate limit and the per-address failed-authentication limit, token
buckets in Redis judged in one round trip (``scripts/admit.lua``), shared by every API process."""

from __future__ import annotations

from dataclasses import dataclass

from redis.commands.core import Script

from .keys import AuthFailures, RateBucket


@dataclass(frozen=True)
class RateLimit:
    script: Script

    def admit(
        self,
        address: str,
        owner: str | None,
        *,
        failures_per_s: float,
        failures_burst: int,
        rate_per_s: float,
        burst: int,
    ) -> tuple[str, float]:
        """Judge a request: ``("blocked", s)`` when its client address has spent its failed
        authentications (any key is then refused), ``("denied", 0)`` for a wrong key (``owner``
        None; counted), ``("rate", s)`` when the key is over its rate, else ``("ok", 0)``;
        ``s`` is the seconds to wait. A limit of 0 per second is off."""
        keys = [AuthFailures.key(address), RateBucket.key(owner) if owner is not None else ""]
        args = [failures_per_s, failures_burst, "1" if owner is None else "0", rate_per_s, burst]
        verdict, ms = self.script(keys=keys, args=args)
        return verdict.decode(), int(ms) / 1000
