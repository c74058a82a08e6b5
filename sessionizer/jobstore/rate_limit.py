"""Per-key rate limiting: a token bucket in Redis (``scripts/rate.lua``), shared by every API
process."""

from __future__ import annotations

from dataclasses import dataclass

from redis.commands.core import Script

from .keys import RateBucket


@dataclass(frozen=True)
class RateLimit:
    script: Script

    def take(self, owner: str, rate_per_s: float, burst: int) -> float:
        """Spend one request from the owner's bucket; 0 when allowed, else seconds to wait."""
        return int(self.script(keys=[RateBucket.key(owner)], args=[rate_per_s, burst])) / 1000
