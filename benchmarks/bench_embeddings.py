"""Embeddings throughput (issue 21): texts/s for batches of 32 through this service's
``/v1/embeddings`` (the default embedding model, all-MiniLM-L6-v2, on the embedding engine)
vs the same model folder run directly in this process, as sentence-transformers' ``encode``
runs it: transformers' encoder, mean pooling over the attention mask, L2-normalized, 256
tokens at most, 32 texts a forward pass. sentence-transformers itself is not a dependency;
where it is installed, its own ``encode`` is timed as well. Prints the ratio and the largest
difference between the two sets of vectors."""

from __future__ import annotations

import importlib.util
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from benchmarks.bench_generation import _login, _serve
from bridge.backends.local import LocalBackend
from bridge.config import EMBEDDING_MODEL_ID
from bridge.models.store import ModelStore
from bridge.router import Router
from local_api import create_app, shutdown

BATCH, PAIRS = 32, 24
UNLIMITED = {t: "100000/minute" for t in ("free", "pro", "enterprise")}
SUBJECTS = ["The cat", "A rocket", "My grandmother", "The committee", "An old lighthouse",
            "The stock market", "A honey bee", "The new compiler"]
DOINGS = ["sleeps in the sun after a long morning of chasing birds around the garden.",
          "was delayed twice because of strong winds over the launch site.",
          "bakes bread every Sunday and gives most of it to the neighbours.",
          "met on Tuesday to discuss the budget for next year's festival."]  # fmt: skip
TEXTS = [f"{s} {d}" for s in SUBJECTS for d in DOINGS][:BATCH]  # 32 distinct sentences


def paired_seconds(api: Callable[[list[str]], list[list[float]]],
                   run: Callable[[list[str]], list[list[float]]]) -> list[tuple[float, float]]:
    """(API, direct) seconds for PAIRS batches of 32, one of each in turn after a warm-up
    of each: on a shared machine both sides of a pair see about the same load."""
    api(TEXTS)
    run(TEXTS)
    pairs = []
    for _ in range(PAIRS):
        started = time.perf_counter()
        api(TEXTS)
        middle = time.perf_counter()
        run(TEXTS)
        pairs.append((middle - started, time.perf_counter() - middle))
    return pairs


def direct(folder: Path) -> Callable[[list[str]], list[list[float]]]:
    """The model run directly: transformers, mean pooling, normalized (sentence-transformers'
    Pooling + Normalize modules for this folder)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModel.from_pretrained(str(folder), dtype=torch.float32).eval()

    def compute(texts: list[str]) -> list[list[float]]:
        encoded = tokenizer(texts, padding=True, truncation=True, max_length=256,
                            return_tensors="pt")  # fmt: skip
        with torch.inference_mode():
            hidden = model(**encoded).last_hidden_state
        weights = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / torch.clamp(weights.sum(1), min=1e-9)
        vectors: list[list[float]] = torch.nn.functional.normalize(pooled, dim=1).tolist()
        return vectors

    return in_a_new_thread(compute)


def in_a_new_thread(compute: Callable[[list[str]], Any]) -> Callable[[list[str]], Any]:
    """``compute`` run in a new thread per call, as the service's threaded server runs each
    request: on a busy 2-core machine the same forward pass was seen to run several times
    slower or faster depending on the thread it ran in (torch's OpenMP pool per thread), so
    both sides run alike."""
    def call(texts: list[str]) -> Any:
        with ThreadPoolExecutor(1) as worker:
            return worker.submit(compute, texts).result()

    return call


def sentence_transformers(folder: Path) -> Callable[[list[str]], list[list[float]]] | None:
    if importlib.util.find_spec("sentence_transformers") is None:
        return None
    from sentence_transformers import SentenceTransformer

    model: Any = SentenceTransformer(str(folder), device="cpu")
    return in_a_new_thread(lambda texts: model.encode(texts, batch_size=BATCH).tolist())


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        backend = LocalBackend(ModelStore(home / "models"), keep_alive=None)
        backend.load(EMBEDDING_MODEL_ID)
        app = create_app({"home": home / "api", "prepare_model": False,
                          "anonymous_limit": "100000/minute", "tier_limits": UNLIMITED},
                         router=Router(backend), local=backend, store=backend.store)  # fmt: skip
        server, url = _serve(app)
        try:
            with httpx.Client(base_url=url, timeout=300) as http:
                headers = _login(http)

                def api(texts: list[str]) -> list[list[float]]:
                    body = {"model": EMBEDDING_MODEL_ID, "input": texts,
                            "encoding_format": "float"}  # fmt: skip
                    data = http.post("/v1/embeddings", headers=headers, json=body).json()
                    return [d["embedding"] for d in data["data"]]

                folder = backend.store.get(EMBEDDING_MODEL_ID).path
                assert folder is not None
                run = direct(folder)
                pairs = paired_seconds(api, run)
                vectors = api(TEXTS)
                st = sentence_transformers(folder)
                st_pairs = paired_seconds(api, st) if st is not None else []
            # the fastest batch of each (the least disturbed by other processes), and the
            # median of the pairs' ratios
            served = BATCH / min(a for a, _ in pairs)
            raw = BATCH / min(r for _, r in pairs)
            ratio = statistics.median(r / a for a, r in pairs)
            gap = max(abs(a - b) for u, v in zip(vectors, run(TEXTS), strict=True)
                      for a, b in zip(u, v, strict=True))  # fmt: skip
            print(f"embeddings ({EMBEDDING_MODEL_ID}, batch of {BATCH}, CPU, {PAIRS} pairs): "
                  f"API /v1/embeddings {served:.1f} texts/s, the same model run directly "
                  f"(transformers, mean pooling, normalized) {raw:.1f} texts/s (best batch "
                  f"of each): ratio {ratio:.2f} (median of pairs; goal >= 0.90); vectors "
                  f"agree to {gap:.1e}")
            if st_pairs:
                best = BATCH / min(r for _, r in st_pairs)
                print(f"  sentence-transformers encode(): {best:.1f} texts/s")
            else:
                print("  (sentence-transformers is not installed: the direct run above is its "
                      "Pooling + Normalize modules written out)")
        finally:
            server.shutdown()
            shutdown(app)
            backend.close()


if __name__ == "__main__":
    main()
