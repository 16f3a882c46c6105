"""A download job's record (what is persisted and shown) and its speed meter.

URLs are stored as ``display_url`` shows them; when that drops credentials or a signed
query, the full URL is kept beside it only sealed (``<key>_sealed``, encrypted by the
caller's ``seal``), so the database holds no secret in clear and a restart can still resume.
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bridge.downloads.sources import Plan, Source, display_url

ACTIVE = ("queued", "downloading")
Seal = Callable[[str], str]


@dataclass
class Job:
    """One download: where from, how far, and how it ended."""

    id: str
    model_id: str
    source: Source
    user_id: int | None = None
    status: str = "queued"  # queued | downloading | completed | failed | cancelled
    bytes_done: int = 0
    bytes_total: int | None = None
    speed_bps: int | None = None
    error_type: str | None = None
    error_message: str | None = None
    plan: Plan | None = None

    @property
    def progress(self) -> float:
        if self.status == "completed":
            return 1.0
        if not self.bytes_total:
            return 0.0
        return round(min(1.0, self.bytes_done / self.bytes_total), 4)

    @property
    def eta_seconds(self) -> float | None:
        """Seconds left at the current speed; None while unknown."""
        if self.status == "completed":
            return 0.0
        if self.status != "downloading" or not self.speed_bps or self.bytes_total is None:
            return None
        return max(0.0, (self.bytes_total - self.bytes_done) / self.speed_bps)


def new_job_id() -> str:
    return f"dl_{secrets.token_hex(8)}"


def human_rate(bps: int | None) -> str:
    """FT's speed string: 45MB/s (decimal units); 0B/s while nothing is measured."""
    value, unit = float(bps or 0), "B"
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            break
        value /= 1000
    return f"{value:.3g}{unit}/s"


class Meter:
    """Bytes per second over the last few seconds (a resumed job counts only new bytes)."""

    def __init__(self, window: float = 5.0) -> None:
        self.window = window
        self.samples: deque[tuple[float, int]] = deque()

    def add(self, now: float, done: int) -> int | None:
        if not self.samples or now - self.samples[-1][0] >= 0.05:
            self.samples.append((now, done))
        while len(self.samples) > 2 and now - self.samples[0][0] > self.window:
            self.samples.popleft()
        start, base = self.samples[0]
        return int((done - base) / (now - start)) if now - start >= 0.2 else None


def _seal(data: dict[str, Any], key: str, seal: Seal) -> dict[str, Any]:
    full = str(data[key])
    shown = display_url(full)
    return data if shown == full else {**data, key: shown, f"{key}_sealed": seal(full)}


def _unseal(data: dict[str, Any], key: str, unseal: Seal) -> dict[str, Any]:
    data = dict(data)
    sealed = data.pop(f"{key}_sealed", None)
    if sealed:
        data[key] = unseal(sealed)
    return data


def stored_request(source: Source, seal: Seal) -> dict[str, Any]:
    """The source as the database keeps it (URL secrets sealed)."""
    return _seal(source.as_json(), "location", seal)


def stored_plan(plan: Plan, seal: Seal) -> dict[str, Any]:
    """The file plan as the database keeps it (URL secrets sealed)."""
    data = plan.as_json()
    return {**data, "files": [_seal(f, "url", seal) for f in data["files"]]}


def source_from_stored(data: dict[str, Any], unseal: Seal) -> Source:
    return Source.from_json(_unseal(data, "location", unseal))


def plan_from_stored(data: dict[str, Any], unseal: Seal) -> Plan:
    files = [_unseal(f, "url", unseal) for f in data.get("files", [])]
    return Plan.from_json({**data, "files": files})
