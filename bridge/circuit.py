"""Per-worker state the router keeps: health, load, failover counts and the circuit breaker.

``failure_threshold`` consecutive failures (requests that could not be served, or failed
probes) open a worker's circuit; after ``cooldown`` seconds it is half-open and one trial
(a request or a probe) may pass; a success closes it, a failure opens it again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from bridge.errors import BackendUnavailable, BridgeError
from bridge.types import Backend
from bridge.urls import redact_url

log = logging.getLogger("bridge.router")


def is_outage(exc: BaseException) -> bool:
    """Whether an error counts against a worker's circuit (a worker's own 4xx answer does not)."""
    return isinstance(exc, BackendUnavailable) or not isinstance(exc, BridgeError)


@dataclass
class WorkerState:
    """What the router knows about one remote backend."""

    backend: Backend
    healthy: bool | None = None
    latency_ms: float | None = None
    models: list[str] = field(default_factory=list)
    runtime_info: dict[str, Any] = field(default_factory=dict)
    failures: int = 0
    # requests this worker failed that the local backend then answered, by stage
    failovers: dict[str, int] = field(
        default_factory=lambda: {"before_first_token": 0, "mid_stream": 0}
    )
    opened_at: float | None = None
    trial: bool = False
    outstanding: int = 0
    last_error: str = ""
    next_probe: float = 0.0  # clock time of the next periodic probe

    def circuit(self, now: float, cooldown: float) -> str:
        """closed, open, or half_open (cooldown over: one trial may pass)."""
        if self.opened_at is None:
            return "closed"
        return "half_open" if now - self.opened_at >= cooldown else "open"

    def record(self, error: BaseException | None, now: float, threshold: int) -> None:
        """Feed one outcome into the circuit breaker (the router holds its lock)."""
        self.trial = False
        if error is None:
            self.failures, self.opened_at, self.healthy = 0, None, True
            return
        self.last_error = f"{type(error).__name__}: {error}"
        if not is_outage(error):
            return
        self.failures += 1
        if self.opened_at is not None or self.failures >= threshold:
            if self.opened_at is None:
                log.warning("circuit opened for %s: %s", self.backend.name, self.last_error)
            self.opened_at = now

    def describe(self, now: float, cooldown: float) -> dict[str, Any]:
        """This worker's entry in GET /system/status (its URL without credentials)."""
        circuit = self.circuit(now, cooldown)
        url = getattr(self.backend, "url", None)
        return {
            "name": self.backend.name,
            "kind": getattr(self.backend, "kind", "worker"),
            "url": redact_url(url) if isinstance(url, str) else None,
            "healthy": self.healthy is True and circuit == "closed",
            "latency_ms": self.latency_ms,
            "models": list(self.models),
            "runtime_info": dict(self.runtime_info),
            "circuit": circuit,
            "outstanding": self.outstanding,
            "last_error": self.last_error,
            "failovers": dict(self.failovers),
        }
