"""The units a worker held when Redis went away go back to the queue once it is back
(worker/reconnect.py), on a real redis-server and real kombu channels.

The end-to-end case is tests/test_faults.py (a Redis restart mid-job); it hits this window only
now and then (a unit received but not yet started at the instant the connection drops), so the
window is set up here by hand: two units taken off the queue, one of them "running".
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace

import pytest
import redis
from kombu import Connection, Queue
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from devstack import RedisServer, start_redis
from worker.reconnect import CELERY_VERSIONS, RestoreUnackedOnReconnect

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def celery_requirement() -> Requirement:
    """The celery line of pyproject.toml's [project] dependencies."""
    deps = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    (line,) = [d for d in deps if Requirement(d).name == "celery"]
    return Requirement(line)


def test_the_installed_celery_is_one_reconnect_py_was_written_for() -> None:
    installed = version("celery")
    written_for = SpecifierSet(CELERY_VERSIONS)
    assert installed in written_for, (
        f"celery {installed} is installed, but worker/reconnect.py subclasses Celery's consumer and was "
        f"written for celery{CELERY_VERSIONS}: read its overrides against this Celery (the consumer's "
        "on_connection_error_after_connected, the Tasks step, kombu's Redis QoS) before widening "
        "CELERY_VERSIONS there and the celery pin in pyproject.toml"
    )


def test_pyproject_pins_the_celery_range_reconnect_py_was_written_for() -> None:
    pinned = celery_requirement().specifier
    assert any(spec.operator == "<" for spec in pinned), "pyproject.toml's celery needs an upper bound"
    assert pinned == SpecifierSet(CELERY_VERSIONS), (
        f"pyproject.toml requires celery{pinned}, worker/reconnect.py was written for celery{CELERY_VERSIONS}"
    )


def test_the_celery_and_kombu_internals_reconnect_py_uses_are_there() -> None:
    """What worker/reconnect.py overrides or reads, by name: moved or renamed, it would fail late."""
    from celery.worker.consumer import Consumer
    from celery.worker.consumer.tasks import Tasks
    from kombu.transport.redis import Channel, QoS

    assert callable(Consumer.on_connection_error_after_connected)
    assert RestoreUnackedOnReconnect.requires == (f"{Tasks.__module__}:{Tasks.__name__}",)
    assert callable(QoS.restore_by_tag)
    assert "_delivered" in vars(QoS(Channel.__new__(Channel)))  # the unacknowledged messages, by tag
    assert hasattr(Channel, "do_restore")


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    with start_redis(tmp_path / "redis") as server:
        yield server


def consumer_on(channel: object) -> SimpleNamespace:
    """The two attributes of Celery's consumer the step reads (a whole consumer needs a worker)."""
    return SimpleNamespace(task_consumer=SimpleNamespace(channel=channel))


@pytest.mark.slow  # a redis-server of its own, restarted
def test_units_held_at_a_connection_loss_are_restored_and_acknowledged_when_it_is_back(
    own_redis: RedisServer, monkeypatch, request
) -> None:
    from celery.worker import state

    store = redis.Redis.from_url(own_redis.url)
    old = Connection(own_redis.url)
    request.addfinalizer(store.close)
    queue = Queue("celery", routing_key="celery")
    with old.Producer() as producer:
        for unit in ("a", "b"):
            producer.publish({"unit": unit}, routing_key="celery", declare=[queue])
    channel = old.default_channel  # the channel Celery's task consumer uses
    waiting, running = queue.bind(channel).get(), queue.bind(channel).get()
    assert store.llen("celery") == 0 and store.hlen("unacked") == 2
    monkeypatch.setattr(state, "active_requests", [SimpleNamespace(message=running)])  # a WeakSet in Celery

    own_redis.stop()
    # as Celery drops a lost connection, with the restore through it skipped (worker.reconnect.Consumer)
    channel.do_restore = False
    old.collect()
    old.close()
    step = RestoreUnackedOnReconnect(SimpleNamespace())
    step.stop(consumer_on(channel))
    own_redis.start()
    assert store.llen("celery") == 0  # without the step, both would wait for the visibility timeout

    with Connection(own_redis.url) as new:
        step.start(consumer_on(new.channel()))
        assert store.llen("celery") == 1  # the one not running is back, marked redelivered
        back = queue.bind(new.channel()).get(no_ack=True)
        assert back.payload == waiting.payload and back.delivery_info["redelivered"]
        assert list(store.hkeys("unacked")) == [running.delivery_tag.encode()]  # still running: left alone
        running.ack()  # the unit ends: acknowledged through its lost channel, now pointed at the new one
        assert store.hlen("unacked") == 0
        step.start(consumer_on(new.channel()))  # nothing held any more: a later restart restores nothing
        assert store.llen("celery") == 0
