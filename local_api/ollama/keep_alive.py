"""Ollama's per-request ``keep_alive``: how long the model stays loaded after this request.

Ollama's ``api.Duration`` (api/types.go UnmarshalJSON): a number is seconds, a string a Go
duration (``"5m"``, ``"1h30m"``, ``"300ms"``; a bare number string is taken as seconds here),
a negative value keeps the model loaded until it is unloaded, and 0 unloads it as soon as the
answer is out. The local backend keeps the value per model (LocalBackend.keep), so
``/ollama/api/ps`` ``expires_at`` and ``/system/status`` show it.
"""

from __future__ import annotations

import math
import re
import threading
from typing import Any

from bridge.errors import ValidationError
from local_api.generation.compute import compute

_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def seconds(value: Any) -> float | None:
    """Seconds to stay loaded (inf: until unloaded; None: not given); ValidationError for
    anything else than a number or a duration."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return math.inf if value < 0 else float(value)
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        sign, body = (-1, text[1:]) if text.startswith("-") else (1, text)
        parts = _PART.findall(body)
        if not parts or "".join(n + u for n, u in parts) != body:
            raise ValidationError(f'keep_alive: time: invalid duration "{text}"',
                                  details={"field": "keep_alive"}) from None  # fmt: skip
        number = sign * sum(float(n) * _UNITS[u] for n, u in parts)
    return math.inf if number < 0 else number


def apply(model: str, value: Any) -> None:
    """Honour ``keep_alive`` for a model the local backend has loaded (after its answer)."""
    hold = seconds(value)
    local = compute().local
    if hold is None or local is None or not hasattr(local, "keep"):
        return
    if model not in local.loaded_models():
        return
    if hold == 0:  # unload once the streams still reading it are done, off this request
        threading.Thread(target=local.unload, args=(model,), daemon=True).start()
    else:
        local.keep(model, hold)
