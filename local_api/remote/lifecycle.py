"""A Colab worker's lifecycle: its keep-alive watched, and the runtime's end made known.

Colab takes runtimes back (idle past ``fit``, the ~12 h session cap, a VM restart, a release
elsewhere; colab-protocol.md). The keep-alive notices it from the assignment list and its own
404s; then the worker is detached (requests fall back to the local backend), and the user is
told why: /system/status (``lost``, and pushed on /ws as ``system.status``), the log, and the
``bridge_colab_runtimes_lost`` metric.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bridge.backends.openai_compatible import OpenAIBackend
from bridge.backends.remote import RemoteBackend
from colab_runtime.colab import ColabClient
from colab_runtime.keepalive import KeepAlive
from local_api.timeutil import iso, utcnow

log = logging.getLogger("compute_bridge.remote")
KEEP_LOST = 20  # lost runtimes remembered for status


@dataclass
class Attached:
    """One attached remote backend and what the service keeps for it."""

    name: str
    kind: str  # worker | openai
    url: str = field(repr=False)  # as given, maybe with user:password: show it only redacted
    backend: Any
    runtime: dict[str, Any] = field(default_factory=dict)  # stored: mode, launched, colab...
    client: ColabClient | None = None  # the Colab control plane, for keep-alive and release
    keepalive: KeepAlive | None = None

    @property
    def colab(self) -> dict[str, Any] | None:
        found = self.runtime.get("colab")
        return found if isinstance(found, dict) else None


def build_backend(name: str, kind: str, url: str, secret: str, timeout: float) -> Any:
    """The router backend for a stored or new worker."""
    if kind == "openai":
        return OpenAIBackend(name, url, secret or None, read_timeout=timeout)
    return RemoteBackend(name, url, secret, read_timeout=timeout)


class Lost:
    """Runtimes Colab took back, newest last (thread-safe), and a count by reason."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[dict[str, Any]] = []
        self.counts: dict[str, int] = {}

    def add(self, name: str, endpoint: str, reason: str, kind: str = "lost") -> None:
        """Record a worker whose runtime went away; ``kind``: reclaimed, restarted or lost."""
        with self._lock:
            self._items = [*self._items[-(KEEP_LOST - 1):],
                           {"worker": name, "endpoint": endpoint, "kind": kind,
                            "reason": reason, "at": iso(utcnow())}]
            self.counts[kind] = self.counts.get(kind, 0) + 1

    def items(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._items)


def track_use(attached: Attached, clock: Callable[[], float]) -> Callable[[], float]:
    """Record when the worker last got a request; returns the reader the keep-alive's idle limit
    uses (the worker counts as used when attached)."""
    used = [clock()]
    backend = attached.backend
    original = backend.generate

    def generate(request: Any) -> Any:
        used[0] = clock()
        return original(request)

    setattr(backend, "generate", generate)  # noqa: B010 (an instance attribute on purpose)
    return lambda: used[0]


def watch(attached: Attached, clock: Callable[[], float],
          on_gone: Callable[[Attached, str], None]) -> None:
    """Hook the worker's keep-alive: idle time from its requests, and what to do when gone."""
    keeper = attached.keepalive
    if keeper is None:
        return
    keeper.last_used = track_use(attached, clock)
    keeper.on_gone = lambda reason: on_gone(attached, reason)
