"""Embedding requests and answers, shared by the router, the backends and the wire format.

An embedding is one request and one answer (no stream): ``EmbedRequest`` in, ``Embeddings``
out. Backends that embed have ``embed(request) -> Embeddings``; the router picks one the
same way it picks a generation's (bridge.router).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# OpenAI's bound on inputs per request (its API reference: "The array must be 2048
# dimensions or less"), kept here for every dialect.
MAX_INPUTS = 2048


@dataclass(frozen=True)
class EmbedRequest:
    """Texts to embed with one model. ``dimensions``: the vector size asked for (None: the
    model's own); ``truncate``: cut inputs longer than the model's context (else
    ContextLengthExceeded, as Ollama's ``truncate: false`` does)."""

    model: str
    inputs: tuple[str, ...]
    dimensions: int | None = None
    truncate: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "input": list(self.inputs),
                "dimensions": self.dimensions, "truncate": self.truncate}  # fmt: skip

    @classmethod
    def from_dict(cls, data: Any) -> EmbedRequest:
        """The wire form back (ValidationError for anything else)."""
        from bridge.errors import ValidationError

        texts = data.get("input") if isinstance(data, dict) else None
        if not isinstance(data, dict) or not isinstance(data.get("model"), str) or not (
                isinstance(texts, list) and texts and all(isinstance(t, str) for t in texts)):
            raise ValidationError("an embed request needs model and input (a list of texts)")
        dimensions = data.get("dimensions")
        return cls(data["model"], tuple(texts), int(dimensions) if dimensions else None,
                   bool(data.get("truncate", True)))  # fmt: skip


@dataclass(frozen=True)
class Embeddings:
    """One vector per input, in input order; ``prompt_tokens``: the tokens read, all inputs
    together (special tokens included, after truncation)."""

    vectors: list[list[float]]
    prompt_tokens: int
    backend: str = ""
    engine: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"embeddings": self.vectors, "prompt_tokens": self.prompt_tokens,
                "backend": self.backend, "engine": self.engine}  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Embeddings:
        return cls([[float(x) for x in v] for v in data["embeddings"]],
                   int(data["prompt_tokens"]), str(data.get("backend") or ""),
                   str(data.get("engine") or ""))  # fmt: skip
