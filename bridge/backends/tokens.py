"""LocalBackend's token side: a model's token ids for a text (or chat messages) and back, so a
client can check a prompt against the context before sending it (the native tokenize route)."""

from __future__ import annotations

from collections.abc import Callable

from bridge.backends.engines import Loaded


class TokenSide:
    """Mixed into LocalBackend, which provides its slots (loading the model on first use)."""

    _slot: Callable[..., Loaded]
    _release: Callable[[Loaded], None]

    def count_tokens(self, model_id: str, text: str) -> int:
        """Tokens ``text`` takes for this model."""
        return len(self.tokenize(model_id, text)[0])

    def tokenize(self, model_id: str, text: str = "", messages: list[dict[str, str]] | None = None,
                 ) -> tuple[list[int], int]:  # fmt: skip
        """(token ids, the model's context): of ``text``, or of ``messages`` rendered with the
        model's chat template (what a chat request's prompt takes)."""
        slot = self._slot(model_id)
        try:
            prompt = slot.engine.template(messages) if messages else text
            return slot.engine.tokenize(prompt), slot.engine.context
        finally:
            self._release(slot)

    def detokenize(self, model_id: str, ids: list[int]) -> str:
        """The text of token ids for this model."""
        slot = self._slot(model_id)
        try:
            return slot.engine.detokenize(ids)
        finally:
            self._release(slot)
