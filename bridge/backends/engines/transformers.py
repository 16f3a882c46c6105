"""The transformers engine: HF-format models on CPU or CUDA, bitsandbytes, continuous batching.

Concurrent requests share transformers' continuous batching manager (``batching.Batcher``):
greedy ones one manager without logits processors, sampling ones one with per-request
temperature/top_k/top_p. Seeded requests, those with repetition penalties and those with a JSON
schema or asking for logprobs run alone through ``model.generate`` (``SeededRun``), which has
the per-request RNG, processors and scores: the manager has no per-request hook for a mask that
depends on the request's own last token, nor gives a request its scores, and a grammar's state
(constraints.py ``Matcher``) must never be shared.

One mutable model object serves all three paths, and paths running at the same time
corrupt it: after the greedy and the sampling managers each ran a request at once, a plain
``generate`` on the model answered word salad (weights unchanged; seen, issue 12). So one
path owns the model at a time (``Gate``): requests of the path in charge join it, others
queue in arrival order; a switch stops the previous path's manager (joining its thread)
before the next one starts. Batching within a path is kept.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections import deque
from typing import Any

from bridge.backends.batching import CPU_BLOCKS, SeededRun, Slot
from bridge.backends.engines import Cancel
from bridge.backends.engines.constraints import Grammars
from bridge.types import GenerateRequest


class Gate:
    """One generation path at a time on one model; waiting paths are served first-come."""

    def __init__(self, slot: Slot, mode: str | None) -> None:
        self.slot, self.mode, self.users = slot, mode, 0
        self.cond = threading.Condition()
        self.waiting: deque[tuple[object, str]] = deque()

    def _may_enter(self, ticket: object, mode: str) -> bool:
        if not self.waiting or self.waiting[0][0] is not ticket:
            return False
        return self.users == 0 or (mode == self.mode and mode != "solo")

    def enter(self, mode: str) -> None:
        """Wait until ``mode`` owns the model (switching to it when no one else uses it)."""
        with self.cond:
            ticket = object()
            self.waiting.append((ticket, mode))
            self.cond.wait_for(lambda: self._may_enter(ticket, mode))
            self.waiting.popleft()
            if mode != self.mode:
                for batcher in self.slot.batchers.values():
                    batcher.close()  # joins its generation thread: the model is free after
                self.slot.batchers.clear()
                self.mode = mode
            self.users += 1
            self.cond.notify_all()

    def leave(self) -> None:
        with self.cond:
            self.users -= 1
            self.cond.notify_all()


class TransformersEngine:
    """A transformers model and tokenizer behind one ``Gate``."""

    name = "transformers"

    def __init__(self, model: Any, tokenizer: Any, device: str, quantization: str,
                 max_context: int | None) -> None:  # fmt: skip
        eos = model.generation_config.eos_token_id
        self.eos = frozenset(eos if isinstance(eos, list) else [] if eos is None else [eos])
        context = int(model.config.max_position_embeddings)
        context = min(context, CPU_BLOCKS * 256) if device == "cpu" else context
        self.trained_context = context  # the most a larger max_context (num_ctx) can give
        self.context = min(context, max_context or context)
        self.settings = (self.name, device, quantization)
        self.slot = Slot(model, tokenizer, (device, quantization), self.context, self.eos)
        self.slot.batcher(sample=False)  # warm: the first greedy answer starts at once
        self.gate = Gate(self.slot, "greedy")
        self.vocab = int(model.config.vocab_size)
        self.grammars = Grammars(tokenizer, self.vocab, self.eos)
        self._ids = itertools.count()

    def tokenize(self, text: str) -> list[int]:
        out: list[int] = self.slot.tokenizer.encode(text, add_special_tokens=False)
        return out

    def detokenize(self, ids: list[int]) -> str:
        text: str = self.slot.tokenizer.decode(ids, skip_special_tokens=True)
        return text

    def template(self, messages: list[dict[str, str]]) -> str:
        text: str = self.slot.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        return text

    def manager(self, sample: bool = False) -> Any:
        """The ContinuousBatchingManager of a path, switched to (for tests and benches)."""
        self.gate.enter("sample" if sample else "greedy")
        try:
            return self.slot.batcher(sample).manager
        finally:
            self.gate.leave()

    def submit(self, request: GenerateRequest, ids: list[int], box: queue.Queue[Any]) -> Cancel:
        # a schema: its own grammar state (built before waiting, so a bad schema fails at once)
        constraint = self.grammars.matcher(request.json_schema, len(ids)) if request.json_schema \
            else None  # fmt: skip
        if constraint is not None and request.prefill:  # the answer so far (a failover's)
            constraint.advance(self.tokenize(request.prefill), generated=False)
        sample = request.temperature > 0
        penalised = (request.repetition_penalty != 1.0 or request.frequency_penalty != 0.0
                     or request.presence_penalty != 0.0)  # fmt: skip
        # logprobs: the managers give no scores per request, a run of its own does
        solo = (penalised or (sample and request.seed is not None) or constraint is not None
                or request.logprobs is not None)  # fmt: skip
        self.gate.enter("solo" if solo else "sample" if sample else "greedy")
        try:
            if solo:
                return SeededRun(request, box, constraint).start(
                    self.slot, ids, request.max_tokens, self.gate.leave)
            return self._batched(request, ids, box, sample)
        except BaseException:
            self.gate.leave()
            raise

    def _batched(self, request: GenerateRequest, ids: list[int], box: queue.Queue[Any],
                 sample: bool) -> Cancel:  # fmt: skip
        batcher = self.slot.batcher(sample)
        rid = f"r{next(self._ids)}"
        batcher.queues[rid] = box
        knobs = {"temperature": float(request.temperature), "top_p": float(request.top_p),
                 "top_k": int(request.top_k or self.vocab)} if sample else {}  # fmt: skip
        batcher.manager.add_request(
            ids, request_id=rid, max_new_tokens=request.max_tokens, streaming=True, **knobs
        )

        def cancel(finished: bool) -> None:
            batcher.queues.pop(rid, None)
            if not finished:
                batcher.manager.cancel_request(rid)
            self.gate.leave()

        return cancel

    def close(self) -> None:
        with self.gate.cond:
            for batcher in self.slot.batchers.values():
                batcher.close()
            self.slot.batchers.clear()
