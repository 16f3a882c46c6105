"""LocalBackend's residency side: how long a loaded model stays (keep-alive) and how much
context it is loaded with (a request's ``num_ctx``).

Both follow Ollama's scheduler (server/sched.go): a request's ``keep_alive`` sets when an idle
model unloads, and a request whose ``num_ctx`` differs from the runner's reloads it. Here only
a larger one reloads (the model loads again with that context, capped by its training
context, keeping the load's other settings); a smaller one limits that request alone, so
clients that disagree on ``num_ctx`` do not reload the model back and forth.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from bridge.backends.engines import Loaded


class Residency:
    """Mixed into LocalBackend, which provides its slots, the backend's keep-alive and load."""

    keep_alive: float | None
    _slots: dict[str, Loaded]
    load: Callable[..., float]
    unload: Callable[[str], None]

    def keep(self, model_id: str, seconds: float) -> None:
        """Keep a loaded model ``seconds`` idle from now (inf: until unloaded), as a request's
        ``keep_alive`` asks; a model not loaded is left alone."""
        if (slot := self._slots.get(model_id)) is not None:
            slot.keep_alive, slot.last_used = seconds, time.monotonic()

    def expires_at(self, model_id: str) -> float | None:
        """When (epoch seconds) a loaded model unloads if left idle; None: never or not loaded."""
        slot = self._slots.get(model_id)
        hold = slot.keep_alive if slot and slot.keep_alive is not None else self.keep_alive
        if slot is None or hold is None or hold == float("inf"):
            return None
        return time.time() + hold - (time.monotonic() - slot.last_used)

    def unload_idle(self) -> list[str]:
        """Unload models idle past their keep-alive (the request's, else the backend's)."""
        gone = [model_id for model_id, slot in list(self._slots.items()) if not slot.active
                and (until := self.expires_at(model_id)) is not None and until <= time.time()]
        for model_id in gone:
            self.unload(model_id)
        return gone

    def context_of(self, model_id: str) -> int | None:
        """Tokens of context (per request) a loaded model has; None when not loaded."""
        slot = self._slots.get(model_id)
        return slot.engine.context if slot is not None else None

    def _fit_context(self, model_id: str, num_ctx: int | None) -> None:
        """Reload a loaded model whose context is smaller than ``num_ctx`` (caller holds the
        lock). Not when it was already asked for that much (its training context, or the
        engine's own bound, capped it: reloading would change nothing)."""
        slot = self._slots.get(model_id)
        if slot is None or num_ctx is None or num_ctx <= slot.engine.context:
            return
        trained = int(getattr(slot.engine, "trained_context", 0) or 0)
        if (trained and slot.engine.context >= trained) or hasattr(slot.engine, "embed"):
            return  # at its limit already, or an embedding model (its context is its own)
        if num_ctx <= int(slot.options.get("context") or 0):
            return
        self.load(model_id, **{**slot.options, "context": num_ctx})

    @staticmethod
    def effective_context(slot: Loaded, num_ctx: int | None) -> int:
        """The context a request gets: the model's, or less when its ``num_ctx`` asks less."""
        return min(slot.engine.context, num_ctx) if num_ctx else slot.engine.context

    @staticmethod
    def load_options(device: str, quantization: str, engine: str | None,
                     parallel: int | None, context: int | None) -> dict[str, Any]:  # fmt: skip
        """What a load was asked for, so a reload that grows the context keeps the rest."""
        return {"device": device, "quantization": quantization, "engine": engine,
                "parallel": parallel, "context": context}  # fmt: skip
