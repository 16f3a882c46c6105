"""A download job's record (what is persisted and shown) and its speed meter."""

from __future__ import annotations

import secrets
from collections import deque
from dataclasses import dataclass

from bridge.download_sources import Plan, Source

ACTIVE = ("queued", "downloading")


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


def human_rate(bps: int | None) -> str | None:
    """FT's speed string: 45MB/s (decimal units)."""
    if bps is None:
        return None
    value, unit = float(bps), "B"
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
