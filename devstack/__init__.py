"""The local stack, the demo and the stack fixtures the tests and benchmarks share: tooling, not
the product (never in the wheel nor in the image; docker-compose.yml's ``load-demo`` mounts it).

- :mod:`devstack.redisserver`: the embedded ``redis-server`` (:class:`RedisServer`);
- :mod:`devstack.net`: free loopback ports, waiting for an HTTP answer;
- :mod:`devstack.processes`: the worker, API and Flower commands, :class:`Stack`, :class:`Supervisor`;
- :mod:`devstack.stack`: :func:`local_stack`, Redis + the API + N Celery workers (+ Flower) in one block;
- :mod:`devstack.demo`: ``make demo``, ``make up``, ``make worker`` (``python -m devstack ...``);
- :mod:`devstack.reference`: the ``hdbscan`` reference labelling the core is tested and benchmarked against.
"""

from __future__ import annotations

from .net import free_port, listening_socket, port_free, wait_http
from .processes import ROOT, Stack, Supervisor, api_command, flower_command, worker_command
from .redisserver import RedisServer, redis_server_binary, start_redis
from .stack import LocalStack, local_stack

__all__ = [
    "ROOT",
    "LocalStack",
    "RedisServer",
    "Stack",
    "Supervisor",
    "api_command",
    "flower_command",
    "free_port",
    "listening_socket",
    "local_stack",
    "port_free",
    "redis_server_binary",
    "start_redis",
    "wait_http",
    "worker_command",
]
