"""Answer requests with transformers on this machine, batching concurrent streams.

Concurrent ``generate`` calls for one model share transformers' continuous batching manager
(``init_continuous_batching`` + ``add_request(streaming=True)``): its generation thread steps
every active request together; a router thread hands each streamed output to its caller.
Two managers per model, made on first use: greedy requests go to one without logits
processors; sampling requests go to one with per-request temperature/top_k/top_p
(``per_request_processors``), whose full-vocabulary sorts cost ~15% per step on CPU (measured).
The manager has no per-request RNG, so a *seeded* sampling request runs through
``model.generate`` with its own ``torch.Generator`` while the batchers pause: reproducible,
not batched (other streams wait meanwhile).
CPU dtype is fp32: bf16 is barely faster here and its greedy answers drift (benchmarks/).
"""

from __future__ import annotations

import importlib.util
import itertools
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from bridge.backends.batching import CPU_BLOCKS, SeededRun, Slot, held_back
from bridge.config import DEFAULT_MODEL_ID
from bridge.errors import (
    BackendUnavailable,
    ContextLengthExceeded,
    NotSupported,
    ValidationError,
)
from bridge.models.convert import PACKAGE, load_model, prepare_default_model, resolve_device
from bridge.models.store import QUANTIZATIONS, ModelStore
from bridge.types import Done, Event, GenerateRequest, Token


class LocalBackend:
    """The Backend protocol over local transformers models."""

    name = "local"

    def __init__(
        self, store: ModelStore, *, keep_alive: float | None = 300.0, device: str = "auto",
        max_context: int | None = None,
    ) -> None:  # fmt: skip
        self.store, self.keep_alive, self.device = store, keep_alive, device
        self.max_context = max_context
        self._slots: dict[str, Slot] = {}
        self._lock = threading.RLock()
        self._ids = itertools.count()

    def ready(self) -> bool:
        """True when a model is loaded, the default model is stored, or its package is there."""
        if self._slots or self.store.is_complete(DEFAULT_MODEL_ID):
            return True
        return importlib.util.find_spec(PACKAGE) is not None

    def loaded_models(self) -> list[str]:
        """Ids of the models in memory (a question only: nothing is loaded or unloaded)."""
        return sorted(self._slots)

    def has_model(self, model_id: str) -> bool:
        """Whether this backend can serve ``model_id``: it is in the local store."""
        return self.store.has(model_id)

    def unload_idle(self) -> list[str]:
        """Unload models unused for ``keep_alive`` seconds; returns their ids."""
        idle_since = time.monotonic() - (self.keep_alive if self.keep_alive is not None else 1e18)
        gone = [model_id for model_id, slot in list(self._slots.items())
                if not slot.active and slot.last_used < idle_since]
        for model_id in gone:
            self.unload(model_id)
        return gone

    def load(self, model_id: str, device: str = "auto", quantization: str = "none") -> float:
        """Load a model (no-op when loaded alike; the old copy stays on error); returns seconds."""
        if quantization not in QUANTIZATIONS:
            raise ValidationError(f"Unknown quantization {quantization!r}: one of {QUANTIZATIONS}")
        device = resolve_device(self.device if device == "auto" else device)
        with self._lock:
            old = self._slots.get(model_id)
            if old is not None and old.settings == (device, quantization):
                return 0.0
            start = time.perf_counter()
            if model_id == DEFAULT_MODEL_ID:
                prepare_default_model(self.store)
            info = self.store.get(model_id)
            if info.status != "ready" or info.path is None:
                raise BackendUnavailable(f"Model {model_id!r} is {info.status}, not ready to load")
            from transformers import AutoTokenizer

            path = str(info.path)
            model = self._load_checked(model_id, lambda: load_model(path, device, quantization))
            eos = model.generation_config.eos_token_id
            eos_ids = frozenset(eos if isinstance(eos, list) else [] if eos is None else [eos])
            context = int(model.config.max_position_embeddings)
            context = min(context, CPU_BLOCKS * 256) if device == "cpu" else context
            context = min(context, self.max_context or context)
            tokenizer = self._load_checked(model_id, lambda: AutoTokenizer.from_pretrained(path))
            new = Slot(model, tokenizer, (device, quantization), context, eos_ids)
            new.batcher(sample=False)
            if old is not None:
                self.unload(model_id)
            self._slots[model_id] = new
            self.store.pin(model_id)
            self.store.touch(model_id)
            return time.perf_counter() - start

    def _load_checked(self, model_id: str, load: Callable[[], Any]) -> Any:
        """Run ``load``; a corrupt model folder is reported as ModelCorrupted naming the file."""
        if not self.store.is_complete(model_id):
            self.store.verify(model_id)  # names the missing or resized file
        try:
            return load()
        except (NotSupported, ValidationError):
            raise
        except Exception as exc:
            self.store.verify(model_id)  # same sizes, other bytes: the sha256 tells
            raise BackendUnavailable(
                f"Model {model_id!r} failed to load: {type(exc).__name__}: {exc}"[:500],
                details={"model_id": model_id},
            ) from exc

    def unload(self, model_id: str) -> None:
        """Finish its streams, stop its threads and free the model (unknown ids: no-op)."""
        with self._lock:
            slot = self._slots.pop(model_id, None)
        if slot is not None:
            for batcher in slot.batchers.values():
                batcher.close()
            self.store.unpin(model_id)

    def manager(self, model_id: str, sample: bool = False) -> Any:
        """The transformers ContinuousBatchingManager serving a loaded model."""
        return self._slots[model_id].batcher(sample).manager

    def close(self) -> None:
        """Unload every model, stopping their threads."""
        for model_id in list(self._slots):
            self.unload(model_id)

    def _slot(self, model_id: str) -> Slot:
        with self._lock:
            if model_id not in self._slots:
                self.load(model_id)
            slot = self._slots[model_id]
            slot.active += 1
            slot.last_used = time.monotonic()
        self.store.touch(model_id)
        return slot

    def count_tokens(self, model_id: str, text: str) -> int:
        """Tokens ``text`` takes for this model."""
        slot = self._slot(model_id)
        slot.active -= 1
        return len(slot.tokenizer.encode(text, add_special_tokens=False))

    def _encode(self, slot: Slot, request: GenerateRequest) -> tuple[list[int], bool]:
        """Prompt ids that leave room for ``max_tokens``; ContextLengthExceeded unless the
        request opted into truncation, which drops the oldest turns (never the system
        prompt, the last turn or the chat template) or, for a plain prompt, its start."""
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        messages = messages or [{"role": "user", "content": request.prompt}]

        def ids_of(turns: list[dict[str, str]]) -> list[int]:
            text = request.prompt
            if request.chat:
                text = slot.tokenizer.apply_chat_template(
                    turns, tokenize=False, add_generation_prompt=True
                )
            out: list[int] = slot.tokenizer.encode(text + request.prefill,
                                                   add_special_tokens=False)
            return out

        ids = ids_of(messages)
        room = slot.context - request.max_tokens
        if len(ids) <= room:
            return ids, False
        if request.truncate and room >= 1:
            if request.chat:
                keep = [m for m in messages[:-1] if m["role"] == "system"]
                older = [m for m in messages[:-1] if m["role"] != "system"]
                while older:
                    older.pop(0)
                    ids = ids_of([*keep, *older, messages[-1]])
                    if len(ids) <= room:
                        return ids, True
            else:
                return ids[-room:], True
        raise ContextLengthExceeded(
            f"This model's context is {slot.context} tokens; the prompt takes {len(ids)} and "
            f"max_tokens asks for {request.max_tokens} more. Shorten the prompt, lower "
            "max_tokens, or ask for truncation.",
            details={"prompt_tokens": len(ids), "max_tokens": request.max_tokens,
                     "context": slot.context},
        )

    def generate(self, request: GenerateRequest) -> Iterator[Event]:
        """Stream Token events, then one Done (the model loads on first use)."""
        if request.max_tokens < 1:
            raise ValidationError("max_tokens must be at least 1")
        slot = self._slot(request.model)
        try:
            yield from self._stream(slot, request, *self._encode(slot, request))
        finally:
            slot.active -= 1
            slot.last_used = time.monotonic()

    def _submit(self, slot: Slot, request: GenerateRequest, ids: list[int], box: Any) -> Any:
        """Queue the request with its batcher (or a seeded run); returns its cancel switch."""
        sample = request.temperature > 0
        if sample and request.seed is not None:
            return SeededRun(request, box).start(slot, ids, request.max_tokens)
        batcher, rid = slot.batcher(sample), f"r{next(self._ids)}"
        batcher.queues[rid] = box
        vocab = int(slot.model.config.vocab_size)
        knobs = {"temperature": float(request.temperature), "top_p": float(request.top_p),
                 "top_k": int(request.top_k or vocab)} if sample else {}  # fmt: skip
        batcher.manager.add_request(
            ids, request_id=rid, max_new_tokens=request.max_tokens, streaming=True, **knobs
        )

        def cancel(finished: bool) -> None:
            batcher.queues.pop(rid, None)
            if not finished:
                batcher.manager.cancel_request(rid)

        return cancel

    def _stream(
        self, slot: Slot, request: GenerateRequest, ids: list[int], truncated: bool
    ) -> Iterator[Event]:
        box: queue.Queue[Any] = queue.Queue()
        cancel = self._submit(slot, request, ids, box)
        tokens: list[int] = []
        sent, finished, stopped = 0, False, False
        try:
            while not (finished or stopped):
                item = box.get()  # the router or the seeded thread always sends a last item
                error = item if isinstance(item, Exception) else getattr(item, "error", None)
                if error:
                    raise BackendUnavailable(f"Local generation failed: {error}")
                if item is None or isinstance(item, list):  # the seeded path
                    tokens, finished = (tokens, True) if item is None else (item, False)
                else:
                    tokens, finished = list(item.generated_tokens), item.is_finished()
                text = slot.tokenizer.decode(
                    [t for t in tokens if t not in slot.eos], skip_special_tokens=True
                )
                cut = min((i for i in (text.find(s, sent) for s in request.stop if s) if i >= 0),
                          default=-1)  # fmt: skip
                eos = bool(tokens and tokens[-1] in slot.eos)
                finished, stopped = finished or eos, cut >= 0 or eos
                end = cut if cut >= 0 else len(text)
                end -= 0 if finished or stopped else held_back(text, sent, request.stop)
                # a multi-byte character cut between tokens decodes as U+FFFD: wait for
                # its last byte, or drop it when the answer ends there (max_tokens)
                end = len(text[:end].rstrip("\ufffd")) if end == len(text) else end
                if end > sent:
                    yield Token(text[sent:end])
                    sent = end
        finally:
            cancel(finished)
        body = len([t for t in tokens if t not in slot.eos])
        reason = "length" if not stopped and body >= request.max_tokens else "stop"
        yield Done(len(ids), body, reason, backend=self.name, truncated_prompt=truncated)
