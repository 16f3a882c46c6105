"""Times and durations in the ISO 8601 forms both API documents use."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime | None) -> str | None:
    """A timestamp with offset, e.g. 2025-04-06T08:14:23-04:00 (local zone of the service)."""
    if moment is None:
        return None
    if moment.tzinfo is None:  # SQLite returns naive datetimes; we store UTC
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone().isoformat(timespec="seconds")


def duration(seconds: float) -> str:
    """An ISO 8601 duration: PT2S, PT1M30S, PT1H, PT0.25S."""
    if seconds < 0:
        seconds = 0
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    frac = seconds - whole
    out = "PT"
    if hours:
        out += f"{hours}H"
    if minutes:
        out += f"{minutes}M"
    if secs or frac or out == "PT":
        out += f"{secs + frac:.3f}".rstrip("0").rstrip(".") + "S" if frac else f"{secs}S"
    return out
