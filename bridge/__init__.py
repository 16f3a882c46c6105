"""Compute Bridge's core library; ``bridge.Client`` is the SDK, the widgets live in
``bridge.widgets``. Names are imported on first use so ``import bridge`` stays light."""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "Client": "bridge.sdk.client",
    "ChatStream": "bridge.sdk.stream",
    "ChatWidget": "bridge.widgets",
    "ModelsWidget": "bridge.widgets",
    "StatusWidget": "bridge.widgets",
    "ConnectWidget": "bridge.widgets",
    "find_or_start": "bridge.sdk.service",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'bridge' has no attribute {name!r}")
    return getattr(import_module(module), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
