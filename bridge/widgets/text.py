"""Every word a widget shows about a duration, a size, a rate or an error goes through here,
so a user reads ``120M/540M · 13 MB/s · 0:40 left`` (tqdm's shape), never ``PT40S``, a regex
or a Jupyter server's internals, and never the value of a secret they typed."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from bridge.errors import BridgeError, DownloadFailed, ModelNotFound

MASK = "•••"
_UNITS = ("", "k", "M", "G", "T")


def size(value: Any) -> str:
    """A byte count the way tqdm prints it: ``540M``, ``1.5G``, ``812``; ``?`` when unknown."""
    if not isinstance(value, int | float) or value < 0:
        return "?"
    amount = float(value)
    for unit in _UNITS:
        if amount < 1000 or unit == _UNITS[-1]:
            return f"{amount:.0f}{unit}" if amount >= 10 or not unit else f"{amount:.1f}{unit}"
        amount /= 1000
    return "?"


def rate(bytes_per_second: Any) -> str:
    """``13 MB/s``; '' when nothing was measured yet."""
    if not isinstance(bytes_per_second, int | float) or bytes_per_second <= 0:
        return ""
    shown = size(bytes_per_second)
    unit = shown[-1] if shown[-1].isalpha() else ""
    return f"{shown.removesuffix(unit)} {unit}B/s"


def clock(seconds: Any) -> str:
    """A duration as a clock, ``0:40`` or ``1:02:03``; '' when unknown."""
    if not isinstance(seconds, int | float) or seconds < 0:
        return ""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


_ISO = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")


def iso_seconds(value: Any) -> float | None:
    """Seconds in an ISO 8601 duration (``PT1M30S``); None for anything else."""
    match = _ISO.match(str(value or ""))
    if not match or value in ("P", "PT"):
        return None
    days, hours, minutes, secs = (float(g or 0) for g in match.groups())
    return days * 86400 + hours * 3600 + minutes * 60 + secs


def seconds(value: Any) -> str:
    """A short duration for people: ``0.33 s``, ``12 s``, ``1:05``."""
    if not isinstance(value, int | float):
        return "?"
    return f"{value:.2g} s" if value < 10 else f"{value:.0f} s" if value < 60 else clock(value)


def progress(job: Any) -> str:
    """tqdm's line for a download: ``22% · 120M/540M · 13 MB/s · 0:40 left``."""
    status = str(job.get("status") or "")
    done, total = job.get("bytes_done"), job.get("bytes_total")
    bits = [f"{float(job.get('progress') or 0.0):.0%}"]
    if isinstance(total, int | float) and total > 0:
        bits.append(f"{size(done or 0)}/{size(total)}")
    if status in ("downloading", "queued"):
        bits.append(rate(job.get("speed_bps")))
        left = job.get("eta_seconds")
        left = left if left is not None else iso_seconds(job.get("eta"))
        if left is not None and job.get("speed_bps"):
            bits.append(f"{clock(left)} left")
    return " · ".join(b for b in bits if b)


# Messages from below the service (a Jupyter server, jsonschema) that mean nothing to a user,
# and what they mean (each read from the text that component really sends).
# A pattern with a replacement rewrites that part; one without replaces the whole line.
_PLAIN: tuple[tuple[re.Pattern[str], str, bool], ...] = (
    (re.compile(r"'_xsrf' argument missing", re.I), "the Jupyter server refused the request: "
     "give its token (it asked for an XSRF cookie)", True),
    (re.compile(r"Gateway server specified in the gateway_url", re.I),
     "the runtime did not answer as a Jupyter server: check its URL and token", True),
    (re.compile(r"does not match '.*'$"), "is not in the expected form", False),
    (re.compile(r"^(\w*url): is not (in the expected form|a URL.*)$"),
     r"\1 must be an http:// or https:// URL", False),
)


def mask(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret's value (4+ characters) replaced by ``•••``."""
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def error(exc: BaseException | str, secrets: Iterable[str] = ()) -> str:
    """One line a notebook user can act on, in plain words, with no secret in it."""
    if isinstance(exc, str):
        text = exc
    elif isinstance(exc, ModelNotFound) and exc.details.get("model_id") and \
            str(exc.details["model_id"]) not in exc.message:
        text = f"{exc.message}: {exc.details['model_id']}"
    elif isinstance(exc, DownloadFailed) and exc.details.get("error_type"):
        text = f"{exc.message} ({exc.details['error_type']})"
    elif isinstance(exc, BridgeError | ValueError | TypeError):
        text = exc.message if isinstance(exc, BridgeError) else str(exc)
    else:
        text = f"{type(exc).__name__}: {exc}"
    for pattern, plain, whole in _PLAIN:
        if pattern.search(text):
            text = plain if whole else pattern.sub(plain, text)
    return mask(text, secrets)
