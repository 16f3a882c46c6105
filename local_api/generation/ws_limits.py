"""Bounds on /ws sockets: how many one account and one process hold, how long they may idle.

Each open socket holds one of the server's request threads for its whole life (flask-sock on
gunicorn's threaded worker, as on werkzeug), so sockets are capped below the thread count:
``Settings.ws_socket_cap`` (half of ``--threads`` by default) leaves the other half to plain
HTTP whatever sockets are open, and ``ws_max_per_user`` keeps one account from taking them all.
A handshake past either cap is refused before the upgrade, 429 in the error envelope.
The counts are per process (each gunicorn worker has its own threads to protect).
"""

from __future__ import annotations

import threading
from collections import Counter

from bridge.config import Settings
from bridge.errors import RateLimitExceeded

# WebSocket close codes (RFC 6455 section 7.4.1)
POLICY_VIOLATION = 1008  # the credential was revoked, or the socket idled too long
REVALIDATE_EVERY = 2.0  # seconds between checks of an open socket's credential
RETRY_AFTER = 5  # seconds a refused handshake is told to wait


class SocketCaps:
    """Per-account and per-process counts of open sockets, safe across request threads."""

    def __init__(self, settings: Settings) -> None:
        self.per_user = settings.ws_max_per_user
        self.total = settings.ws_socket_cap
        self.lock = threading.Lock()
        self.open: Counter[int] = Counter()

    def admit(self, user_id: int) -> None:
        """Count a new socket of ``user_id``, or raise RateLimitExceeded (429) past a cap."""
        with self.lock:
            if self.open[user_id] >= self.per_user:
                raise _refused(
                    f"This account already has {self.per_user} open WebSockets: close one first",
                    "per_user", self.per_user)
            if sum(self.open.values()) >= self.total:
                raise _refused("The service holds as many WebSockets as it serves; retry later",
                               "service", self.total)
            self.open[user_id] += 1

    def release(self, user_id: int) -> None:
        with self.lock:
            self.open[user_id] -= 1
            if self.open[user_id] <= 0:
                del self.open[user_id]


def _refused(message: str, scope: str, cap: int) -> RateLimitExceeded:
    return RateLimitExceeded(
        message, details={"limit": cap, "scope": scope, "retry_after": RETRY_AFTER},
        headers={"Retry-After": str(RETRY_AFTER)})
