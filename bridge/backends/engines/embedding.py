"""The embedding engine: a sentence-transformers folder (a transformers encoder plus its
``1_Pooling/config.json``, optional ``2_Normalize``) run with transformers on CPU or CUDA.

It reproduces sentence-transformers' ``encode`` for the poolings its ``Pooling`` module
names (mean, cls, max, mean_sqrt_len): the encoder's last hidden state, pooled over the
attention mask, L2-normalized when ``modules.json`` lists a ``Normalize`` module; inputs
longer than ``sentence_bert_config.json``'s ``max_seq_length`` are truncated as there.
Inputs are batched (32 a batch, sorted by length so padding stays small). It fills the
Engine protocol's text side (tokenize, context) and refuses generation.
"""

from __future__ import annotations

import json
import queue
import threading
from pathlib import Path
from typing import Any

from bridge.backends.engines import Cancel
from bridge.errors import ContextLengthExceeded, ModelTypeMismatch, NotSupported
from bridge.types import GenerateRequest

BATCH = 32  # sentence-transformers' default batch size
POOLINGS = ("mean_tokens", "cls_token", "max_tokens", "mean_sqrt_len_tokens")


def _read(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def read_pooling(folder: Path) -> tuple[str, bool, int]:
    """(pooling mode, normalized, dimension) from a sentence-transformers folder."""
    modules = _read(folder / "modules.json") or []
    pool_dir = next((m["path"] for m in modules if m["type"].endswith(".Pooling")), "1_Pooling")
    config = _read(folder / pool_dir / "config.json") or {"pooling_mode_mean_tokens": True}
    modes = [m for m in POOLINGS if config.get(f"pooling_mode_{m}")]
    if len(modes) != 1:
        raise NotSupported(f"Pooling {config} is not one of {', '.join(POOLINGS)}")
    normalized = any(m["type"].endswith(".Normalize") for m in modules)
    return modes[0], normalized, int(config.get("word_embedding_dimension") or 0)


class EmbeddingEngine:
    """One embedding model; ``embed`` is thread-safe (one forward pass at a time)."""

    name = "transformers"
    eos: frozenset[int] = frozenset()

    def __init__(self, folder: Path, device: str, model_id: str = "") -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.model_id = model_id or folder.name
        self.pooling, self.normalized, dimension = read_pooling(folder)
        self.model = AutoModel.from_pretrained(str(folder), dtype=torch.float32).to(device)
        self.model.eval()
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        self.dimension = dimension or int(self.model.config.hidden_size)
        limit = (_read(folder / "sentence_bert_config.json") or {}).get("max_seq_length")
        self.context = int(limit or self.model.config.max_position_embeddings)
        self.settings = ("transformers", device, "none")
        self.device = device
        self._lock = threading.Lock()

    def tokenize(self, text: str) -> list[int]:
        ids: list[int] = self.tokenizer(text, add_special_tokens=True)["input_ids"]
        return ids

    def detokenize(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=True))

    def _refuse(self) -> ModelTypeMismatch:
        return ModelTypeMismatch(
            f"Model {self.model_id!r} is an embedding model: it answers embeddings "
            "(/v1/embeddings, /ollama/api/embed, /api/v1/embeddings), not chat or completions",
            details={"model": self.model_id, "type": "embedding"})  # fmt: skip

    def template(self, messages: list[dict[str, str]]) -> str:
        raise self._refuse()

    def submit(self, request: GenerateRequest, ids: list[int], box: queue.Queue[Any]) -> Cancel:
        raise self._refuse()

    def embed(self, texts: list[str], truncate: bool = True) -> tuple[list[list[float]], int]:
        """One vector per text (input order) and the tokens read; ContextLengthExceeded for a
        text over the context when ``truncate`` is False."""
        import torch

        if not truncate:
            for index, text in enumerate(texts):
                if (n := len(self.tokenize(text))) > self.context:
                    raise ContextLengthExceeded(
                        f"input[{index}] has {n} tokens; this model reads at most "
                        f"{self.context} (send truncate: true to cut it)",
                        details={"prompt_tokens": n, "context": self.context})  # fmt: skip
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        vectors: list[list[float]] = [[] for _ in texts]
        tokens = 0
        for start in range(0, len(order), BATCH):
            batch = order[start:start + BATCH]
            encoded = self.tokenizer([texts[i] for i in batch], padding=True, truncation=True,
                                     max_length=self.context, return_tensors="pt").to(self.device)
            mask = encoded["attention_mask"]
            with self._lock, torch.inference_mode():
                hidden = self.model(**encoded).last_hidden_state
            pooled = self._pool(hidden, mask)
            if self.normalized:
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
            tokens += int(mask.sum())
            for row, index in zip(pooled.tolist(), batch, strict=True):
                vectors[index] = row
        return vectors, tokens

    def _pool(self, hidden: Any, mask: Any) -> Any:
        import torch

        weights = mask.unsqueeze(-1).to(hidden.dtype)
        if self.pooling == "cls_token":
            return hidden[:, 0]
        if self.pooling == "max_tokens":
            return hidden.masked_fill(weights == 0, -1e9).max(dim=1).values
        summed = (hidden * weights).sum(dim=1)
        counts = torch.clamp(weights.sum(dim=1), min=1e-9)
        return summed / (counts.sqrt() if self.pooling == "mean_sqrt_len_tokens" else counts)

    def close(self) -> None:
        self.model = None
