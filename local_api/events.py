"""Publish/subscribe for WebSocket pushes (model_status, chat_update): in process, or across
every API instance through a Redis channel when BRIDGE_REDIS_URL is set."""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask, current_app

Event = tuple[str, dict[str, Any]]
CHANNEL = "bridge:events"
log = logging.getLogger("compute_bridge.events")


class EventBus:
    """Each subscriber gets a bounded queue; events go to one user or to everyone (None)."""

    def __init__(self, maxsize: int = 256) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[tuple[int | None, queue.Queue[Event]]] = []
        self._hooks: dict[str, list[Callable[[], None]]] = {}
        self._maxsize = maxsize

    @contextmanager
    def subscribe(self, user_id: int | None) -> Iterator[queue.Queue[Event]]:
        inbox: queue.Queue[Event] = queue.Queue(self._maxsize)
        entry = (user_id, inbox)
        with self._lock:
            self._subscribers.append(entry)
        try:
            yield inbox
        finally:
            with self._lock:
                self._subscribers.remove(entry)

    def publish(self, name: str, data: dict[str, Any], *, user_id: int | None = None) -> None:
        """Deliver to ``user_id``'s subscribers, or to all when None; a full queue drops."""
        with self._lock:
            targets = [q for uid, q in self._subscribers if user_id is None or uid == user_id]
        for inbox in targets:
            try:
                inbox.put_nowait((name, data))
            except queue.Full:  # a stalled socket must not block the publisher
                pass


    def on_notice(self, name: str, callback: Callable[[], None]) -> None:
        """Call ``callback()`` on every ``notice(name)``, from any instance (never a socket's
        business: notices are not pushed to /ws)."""
        with self._lock:
            self._hooks.setdefault(name, []).append(callback)

    def notice(self, name: str) -> None:
        """Tell this service's parts (on every instance, with Redis) that ``name`` changed."""
        self._run_hooks(name)

    def _run_hooks(self, name: str) -> None:
        with self._lock:
            hooks = list(self._hooks.get(name, ()))
        for hook in hooks:
            try:
                hook()
            except Exception:  # one listener's failure is not the publisher's
                log.exception("events: notice %s failed in a listener", name)

    def close(self) -> None:
        """Nothing to stop in process."""


class RedisEventBus(EventBus):
    """Publishes to a Redis channel; one listener thread per instance hands what arrives
    (from any instance, this one included) to the local subscribers."""

    def __init__(self, redis_client: Any, maxsize: int = 256) -> None:
        super().__init__(maxsize)
        self._redis = redis_client
        self._pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
        self._pubsub.subscribe(CHANNEL)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="events-redis", daemon=True)
        self._thread.start()

    def publish(self, name: str, data: dict[str, Any], *, user_id: int | None = None) -> None:
        self._redis.publish(CHANNEL, json.dumps({"name": name, "data": data, "user": user_id}))

    def notice(self, name: str) -> None:
        self._redis.publish(CHANNEL, json.dumps({"notice": name}))

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                message = self._pubsub.get_message(timeout=0.5)
            except Exception:  # a dropped connection: redis-py reconnects on the next call
                log.warning("events: Redis connection lost; retrying", exc_info=True)
                self._stop.wait(1.0)
                continue
            if message is not None and message.get("type") == "message":
                event = json.loads(message["data"])
                if "notice" in event:
                    self._run_hooks(str(event["notice"]))
                else:
                    super().publish(event["name"], event["data"], user_id=event["user"])

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._pubsub.close()


def bus() -> EventBus:
    return current_app.extensions["events"]  # type: ignore[no-any-return]


def init_app(app: Flask) -> None:
    """After storage.shared_state.init_app: Redis when it is configured."""
    shared = app.extensions.get("redis")
    app.extensions["events"] = EventBus() if shared is None else RedisEventBus(shared)
