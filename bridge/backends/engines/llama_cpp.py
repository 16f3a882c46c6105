"""The llama.cpp engine: GGUF models on CPU through llama-cpp-python.

A ``llama_cpp.Llama`` object is not thread-safe, and llama-cpp-python 0.3.36 exposes no
multi-sequence batching in its Python API (one context, one sequence). So requests queue
first-come (FIFO) in front of one worker thread per model; a queued request that is
cancelled is skipped, never started. Queue depth and waiting time are in ``stats()``
(``/metrics``). Every request starts from a cleared context (``reset()``): its answer never
depends on what ran before it. Sampling: llama.cpp's own chain with min_p and typical_p
off, so temperature/top_k/top_p/penalties mean what they mean on transformers.
"""

from __future__ import annotations

import os
import queue
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.backends.engines import Cancel
from bridge.types import GenerateRequest


@dataclass(eq=False)
class Job:
    request: GenerateRequest
    ids: list[int]
    box: queue.Queue[Any]
    queued: float = field(default_factory=time.monotonic)
    cancelled: threading.Event = field(default_factory=threading.Event)


def default_threads() -> int:
    """Physical cores are what decoding scales with; os.cpu_count() counts both hyperthreads."""
    return max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                      else os.cpu_count() or 1))  # fmt: skip


class LlamaCppEngine:
    """One GGUF model in llama.cpp, one worker thread, a FIFO queue in front of it."""

    name = "llama.cpp"

    def __init__(self, gguf: Path, max_context: int | None, threads: int | None = None) -> None:
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        # 4096 tokens of KV cache unless asked otherwise (the model's own limit caps it).
        self.llm = Llama(str(gguf), n_ctx=max_context or 4096, seed=0, verbose=False,
                         n_threads=threads or default_threads())  # fmt: skip
        self.context = min(int(self.llm.n_ctx()), int(self.llm._model.n_ctx_train()))
        meta = dict(self.llm.metadata)
        self.settings = (self.name, "cpu", gguf.name)
        model = self.llm._model
        self.eos = frozenset(t for t in (model.token_eos(), model.token_eot()) if t >= 0)
        template = meta.get("tokenizer.chat_template")
        eos, bos = (model.token_get_text(t) if t >= 0 else ""
                    for t in (model.token_eos(), model.token_bos()))  # fmt: skip
        self.formatter = Jinja2ChatFormatter(template, eos, bos) if template else None
        self.jobs: deque[Job] = deque()
        self.cond = threading.Condition()
        self.closed = False
        self.waited, self.served = 0.0, 0
        self.worker = threading.Thread(target=self.work, name="llama-cpp", daemon=True)
        self.worker.start()

    def tokenize(self, text: str) -> list[int]:
        return list(self.llm.tokenize(text.encode(), add_bos=False, special=True))

    def detokenize(self, ids: list[int]) -> str:
        return self.llm.detokenize(ids).decode("utf-8", errors="replace")

    def template(self, messages: list[dict[str, str]]) -> str:
        if self.formatter is None:
            return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"
        return str(self.formatter(messages=messages).prompt)  # type: ignore[arg-type]

    def stats(self) -> dict[str, float]:
        """Queue depth now, and seconds requests have waited in it (total) and how many."""
        with self.cond:
            depth = sum(1 for job in self.jobs if not job.cancelled.is_set())
            return {"queue_depth": depth, "queue_wait_seconds": self.waited,
                    "served": self.served}  # fmt: skip

    def submit(self, request: GenerateRequest, ids: list[int], box: queue.Queue[Any]) -> Cancel:
        job = Job(request, ids, box)
        with self.cond:
            if self.closed:
                raise RuntimeError("the model was unloaded")
            self.jobs.append(job)
            self.cond.notify_all()
        return lambda _finished: job.cancelled.set()

    def work(self) -> None:
        """The worker thread: one request at a time, in arrival order."""
        while True:
            with self.cond:
                self.cond.wait_for(lambda: self.jobs or self.closed)
                if not self.jobs:
                    return  # closed and drained
                job = self.jobs.popleft()
                if job.cancelled.is_set():
                    continue
                self.waited += time.monotonic() - job.queued
                self.served += 1
            try:
                self.run(job)
                job.box.put(None)
            except Exception as exc:  # an engine fault raises in the consumer
                job.box.put(exc)

    def run(self, job: Job) -> None:
        r = job.request
        sample = r.temperature > 0
        seed = r.seed if r.seed is not None else secrets.randbits(31)
        self.llm.set_seed(int(seed) if sample else 0)
        self.llm.reset()  # type: ignore[no-untyped-call]  # no prefix reuse: an answer never depends on the one before it
        tokens: list[int] = []
        for token in self.llm.generate(
            job.ids, temp=float(r.temperature) if sample else 0.0, top_k=int(r.top_k),
            top_p=float(r.top_p), min_p=0.0, typical_p=1.0,
            repeat_penalty=float(r.repetition_penalty),
            frequency_penalty=float(r.frequency_penalty),
            presence_penalty=float(r.presence_penalty),
        ):  # fmt: skip
            if job.cancelled.is_set():
                return
            tokens.append(int(token))
            job.box.put(list(tokens))
            if token in self.eos or len(tokens) >= r.max_tokens:
                return

    def close(self) -> None:
        """Finish the request running and those queued, then free the model."""
        with self.cond:
            self.closed = True
            self.cond.notify_all()
        self.worker.join(timeout=60)
        self.llm.close()
