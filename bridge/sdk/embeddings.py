"""``client.embeddings``: vectors for texts from an embedding model (POST /api/v1/embeddings)."""

from __future__ import annotations

from bridge.sdk.resources import _Resource, compact
from bridge.sdk.types import Record


class EmbeddingResult(Record):
    """``embeddings``: one vector per input, in input order; ``usage.prompt_tokens``: tokens
    read; ``dimensions``: the vector size; ``backend``/``engine``: who computed them."""

    embeddings: list[list[float]]
    model: str
    dimensions: int
    usage: Record
    backend: str
    engine: str | None
    metrics: Record


class Embeddings(_Resource):
    """Embeddings (the service's default embedding model is all-minilm-l6-v2: 384 numbers a
    text, mean-pooled and normalized, so a dot product is the cosine similarity)."""

    def create(self, input: str | list[str], *, model: str | None = None,
               dimensions: int | None = None, truncate: bool | None = None,
               ) -> EmbeddingResult:  # fmt: skip
        """Embed a text or a list of texts. Raises ValidationError (empty input, a model that
        does not embed, ``dimensions`` the model cannot give), ContextLengthExceeded (a text
        over the model's context with ``truncate=False``), ModelNotFound."""
        body = compact(input=input, model=model, dimensions=dimensions, truncate=truncate)
        return EmbeddingResult(self._call("POST", "/embeddings", json=body))
