"""``Prefer: wait`` slots: how many waits one key may hold at once, counted in Redis so the bound
holds across every API process (``scripts/wait_slot.lua``)."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from redis.commands.core import Script

from .keys import WaitSlots as WaitsKey


@dataclass(frozen=True)
class WaitSlots:
    client: redis.Redis
    script: Script

    def take(self, owner: str, token: str, seconds: float, cap: int) -> bool:
        """Count one more wait of the owner's, lasting at most ``seconds``; ``False`` at ``cap``."""
        ms = int(seconds * 1000) + 1000  # the slot outlives the wait by a margin, never the reverse
        return bool(self.script(keys=[WaitsKey.key(owner)], args=[token, ms, cap]))

    def release(self, owner: str, token: str) -> None:
        self.client.zrem(WaitsKey.key(owner), token)
