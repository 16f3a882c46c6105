"""``client.tokens``: a model's token ids for a text, to check a prompt against the context
before sending it (POST /api/v1/tokenize, /api/v1/detokenize)."""

from __future__ import annotations

from bridge.sdk.resources import _Resource, compact
from bridge.sdk.types import Record


class Tokenized(Record):
    """``tokens``: the ids; ``count``; ``context``: the model's window (prompt + max_tokens)."""

    model: str
    tokens: list[int]
    count: int
    context: int


class Tokens(_Resource):
    def tokenize(self, text: str | None = None, *, model: str | None = None,
                 messages: list[dict[str, str]] | None = None) -> Tokenized:  # fmt: skip
        """The ids of ``text``, or of chat ``messages`` rendered with the model's template
        (one of the two). Raises ValidationError, ModelNotFound."""
        body = compact(text=text, model=model, messages=messages)
        return Tokenized(self._call("POST", "/tokenize", json=body))

    def detokenize(self, tokens: list[int], *, model: str | None = None) -> str:
        """The text of token ids."""
        answer = self._call("POST", "/detokenize", json=compact(tokens=tokens, model=model))
        return str(answer["text"])
