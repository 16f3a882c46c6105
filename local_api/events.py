"""In-process publish/subscribe for WebSocket pushes (model_status, chat_update)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask, current_app

Event = tuple[str, dict[str, Any]]


class EventBus:
    """Each subscriber gets a bounded queue; events go to one user or to everyone (None)."""

    def __init__(self, maxsize: int = 256) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[tuple[int | None, queue.Queue[Event]]] = []
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


def bus() -> EventBus:
    return current_app.extensions["events"]  # type: ignore[no-any-return]


def init_app(app: Flask) -> None:
    app.extensions["events"] = EventBus()
