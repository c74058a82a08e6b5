"""Which Celery workers are alive: one sorted set of worker names, scored by when each beat expires.

Each worker refreshes its own member every few seconds (``worker/heartbeat.py``); the API's
``/readyz`` counts the members whose expiry lies ahead, and a worker's own healthcheck asks
whether its member does. Why this rather than Celery's ``inspect ping``: a ping is broadcast
over the broker and waits its whole timeout for replies (a second or more per probe, work for
every worker), while this is one ``ZCOUNT`` on a key of a few members. Scores come from the
Redis server's clock (``TIME``), so API and worker hosts need not agree on the time.

Key: ``sz:workers`` (zset: worker name -> epoch ms its beat expires; expired members are pruned
at each beat; the key itself expires with the last beat). See the key table in ``jobstore/__init__.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .keys import WORKERS_KEY as KEY

# KEYS[1] the zset. ARGV: worker name, ttl ms. One beat: add or refresh, prune the expired.
_BEAT = """
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
"""

# KEYS[1] the zset. ARGV[1] a worker name, or '' for all. Live members (of that name).
_ALIVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[1] == '' then return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf') end
local expiry = redis.call('ZSCORE', KEYS[1], ARGV[1])
if expiry and tonumber(expiry) > now then return 1 end
return 0
"""


def fail_fast_client(url: str) -> redis.Redis:
    """A client that answers within seconds or raises: no retries (redis-py retries ten times by
    default), for a probe, and for a beat that runs on a worker's event loop."""
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2, retry=Retry(NoBackoff(), 0))


@dataclass
class WorkerRegistry:
    """The live workers, as their heartbeats say."""

    client: redis.Redis
    ttl_s: float = 15.0

    def __post_init__(self) -> None:
        self._beat = self.client.register_script(_BEAT)
        self._alive = self.client.register_script(_ALIVE)

    def beat(self, name: str) -> None:
        """Say that ``name`` is alive for the next ``ttl_s`` seconds."""
        self._beat(keys=[KEY], args=[name, int(self.ttl_s * 1000)])

    def leave(self, name: str) -> None:
        """A worker stopping cleanly leaves at once rather than when its beat expires."""
        self.client.zrem(KEY, name)

    def alive(self) -> int:
        """How many workers have beaten within their ttl."""
        return int(self._alive(keys=[KEY], args=[""]))

    def is_alive(self, name: str) -> bool:
        return bool(self._alive(keys=[KEY], args=[name]))
