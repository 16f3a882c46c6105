"""Answer requests with transformers on this machine, batching concurrent streams.

Concurrent ``generate`` calls for one model share transformers' continuous batching manager
(``init_continuous_batching`` + ``add_request(streaming=True)``): one generation thread steps
every active request together; a small router thread hands each streamed output to its caller.
The manager supports per-request temperature, top_k and top_p (``per_request_processors``), so
greedy requests ride along as top_k=1. It has no per-request RNG, so a *seeded* sampling request
runs alone through ``model.generate`` with its own ``torch.Generator`` (reproducible, not batched).
CPU dtype: fp32 by default: bf16 is faster but its greedy answers drift (see benchmarks/).
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from bridge.convert import load_model, prepare_default_model
from bridge.errors import BackendUnavailable, NotSupported, ValidationError
from bridge.model_store import DEFAULT_MODEL_ID, ModelStore
from bridge.types import Done, Event, GenerateRequest, Token

QUANTIZATIONS = ("none", "fp32", "bf16", "fp16", "int8-dynamic", "8bit", "4bit")
# CPU: a fixed KV cache (32 pages x 256 tokens) instead of 60% of RAM, which the manager would take.
CPU_BLOCKS = 32
GEN_PROMPT = {"add_generation_prompt": True}


@dataclass(eq=False)
class Slot:
    """One loaded model: weights, tokenizer, its batching manager and the router's queues."""

    model_id: str
    model: Any
    tokenizer: Any
    manager: Any
    settings: tuple[str, str]
    context: int
    eos: frozenset[int]
    queues: dict[str, queue.Queue[Any]] = field(default_factory=dict)
    active: int = 0
    last_used: float = field(default_factory=time.monotonic)
    closing: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.router = threading.Thread(target=self.route, name="cb-router", daemon=True)

    def route(self) -> None:
        """Hand each streamed output to the queue of the request it belongs to."""
        while not self.closing.is_set():
            out = self.manager.get_result(timeout=0.1)
            if out is not None:
                target = self.queues.get(out.request_id)
                if target is not None:
                    target.put(out)
            elif not self.manager.is_running():
                for target in list(self.queues.values()):
                    target.put(RuntimeError("the generation loop stopped"))
                self.closing.wait(0.1)


class SeededRun:
    """One seeded sampling run through ``model.generate``: sampler, streamer and stop switch."""

    def __init__(self, request: GenerateRequest, box: queue.Queue[Any]) -> None:
        from transformers.generation import logits_process as lp

        self.warpers: list[Any] = [lp.TemperatureLogitsWarper(float(request.temperature))]
        self.warpers += [lp.TopKLogitsWarper(int(request.top_k))] if request.top_k else []
        self.warpers += [lp.TopPLogitsWarper(float(request.top_p))] if request.top_p < 1 else []
        self.generator = torch.Generator().manual_seed(int(request.seed or 0))
        self.box, self.tokens, self.prompt_seen = box, list[int](), False
        self.stopped = threading.Event()

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        for warp in self.warpers:
            scores = warp(input_ids, scores)
        drawn = torch.multinomial(scores.float().softmax(-1), 1, generator=self.generator)
        return torch.full_like(scores, float("-inf")).scatter(1, drawn, 0.0)

    def put(self, value: torch.Tensor) -> None:
        if self.prompt_seen:
            self.tokens.extend(int(t) for t in value.reshape(-1).tolist())
            self.box.put(list(self.tokens))
        self.prompt_seen = True  # generate() streams the prompt first

    def end(self) -> None:
        self.box.put(None)


class LocalBackend:
    """The Backend protocol over local transformers models."""

    name = "local"

    def __init__(
        self,
        store: ModelStore,
        *,
        keep_alive: float | None = 300.0,
        device: str = "auto",
        max_context: int | None = None,
    ) -> None:
        self.store, self.keep_alive, self.device = store, keep_alive, device
        self.max_context = max_context
        self._slots: dict[str, Slot] = {}
        self._lock = threading.RLock()
        self._ids = itertools.count()

    def ready(self) -> bool:
        """True when a model is loaded or the default model can be prepared."""
        return bool(self._slots) or self.store.get(DEFAULT_MODEL_ID).status != "error"

    def loaded_models(self) -> list[str]:
        """Ids of the models in memory (idle ones past ``keep_alive`` are unloaded first)."""
        now = time.monotonic()
        for model_id, slot in list(self._slots.items()):
            if self.keep_alive is not None and not slot.active:
                if now - slot.last_used > self.keep_alive:
                    self.unload(model_id)
        return sorted(self._slots)

    def load(self, model_id: str, device: str = "auto", quantization: str = "none") -> float:
        """Load a model (no-op when loaded alike); returns the seconds it took."""
        if quantization not in QUANTIZATIONS:
            raise ValidationError(f"Unknown quantization {quantization!r}: one of {QUANTIZATIONS}")
        device = device if device != "auto" else self.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cuda" and not torch.cuda.is_available():
            raise NotSupported("No CUDA device on this machine")
        with self._lock:
            slot = self._slots.get(model_id)
            if slot is not None and slot.settings == (device, quantization):
                return 0.0
            start = time.perf_counter()
            if model_id == DEFAULT_MODEL_ID:
                prepare_default_model(self.store)
            info = self.store.get(model_id)
            if info.status != "ready" or info.path is None:
                raise BackendUnavailable(f"Model {model_id!r} is {info.status}, not ready to load")
            new = self._start(model_id, str(info.path), device, quantization)  # old kept on error
            if slot is not None:
                self.unload(model_id)
            self._slots[model_id] = new
            self.store.pin(model_id)
            self.store.touch(model_id)
            return time.perf_counter() - start

    def _start(self, model_id: str, path: str, device: str, quantization: str) -> Slot:
        from transformers import AutoTokenizer, GenerationConfig
        from transformers.generation.configuration_utils import ContinuousBatchingConfig

        tokenizer = AutoTokenizer.from_pretrained(path)
        model = load_model(path, device, quantization)
        eos = model.generation_config.eos_token_id
        eos_ids = frozenset(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        # Defaults != 1.0 make the manager build the temperature/top-k/top-p processors at all.
        config = GenerationConfig(  # type: ignore[no-untyped-call]
            do_sample=True, temperature=0.7, top_k=50, top_p=0.9, max_new_tokens=256,
            eos_token_id=sorted(eos_ids) or None, pad_token_id=tokenizer.pad_token_id,
        )  # fmt: skip
        cpu = device == "cpu"
        cb = ContinuousBatchingConfig(
            per_request_processors=True, auto_switch_to_flash=False,
            num_blocks=CPU_BLOCKS if cpu else None, max_batch_tokens=512 if cpu else None,
        )  # fmt: skip
        manager = model.init_continuous_batching(config, continuous_batching_config=cb)
        context = int(model.config.max_position_embeddings)
        context = min(context, CPU_BLOCKS * cb.page_size) if cpu else context
        context = min(context, self.max_context or context)
        slot = Slot(model_id, model, tokenizer, manager, (device, quantization), context, eos_ids)
        manager.start()
        slot.router.start()
        return slot

    def unload(self, model_id: str) -> None:
        """Stop a model's batching thread and free it (unknown ids are a no-op)."""
        with self._lock:
            slot = self._slots.pop(model_id, None)
        if slot is None:
            return
        slot.manager.stop(block=True, timeout=10)
        slot.manager.destroy()
        slot.closing.set()
        slot.router.join(timeout=5)
        self.store.unpin(model_id)

    def manager(self, model_id: str) -> Any:
        """The transformers ContinuousBatchingManager serving a loaded model."""
        return self._slots[model_id].manager

    def close(self) -> None:
        """Unload every model, stopping their threads."""
        for model_id in list(self._slots):
            self.unload(model_id)

    def _slot(self, model_id: str) -> Slot:
        with self._lock:
            if model_id not in self.loaded_models():
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
        if request.chat:
            messages = [{"role": m.role, "content": m.content} for m in request.messages]
            messages = messages or [{"role": "user", "content": request.prompt}]
            text = slot.tokenizer.apply_chat_template(messages, tokenize=False, **GEN_PROMPT)
        else:
            text = request.prompt
        ids: list[int] = slot.tokenizer.encode(text + request.prefill, add_special_tokens=False)
        room = slot.context - request.max_tokens
        if room < 1:
            msg = f"max_tokens={request.max_tokens} fills the {slot.context}-token context"
            raise ValidationError(msg)
        return (ids[-room:], True) if len(ids) > room else (ids, False)

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
        """Queue the request; returns a cancel callable."""
        if request.seed is not None and request.temperature > 0:
            return self._submit_seeded(slot, request, ids, box)
        rid = f"{slot.model_id}-{next(self._ids)}"
        slot.queues[rid] = box
        greedy = request.temperature <= 0
        slot.manager.add_request(
            ids, request_id=rid, max_new_tokens=request.max_tokens, streaming=True,
            temperature=1.0 if greedy else float(request.temperature),
            top_k=1 if greedy else int(request.top_k or slot.model.config.vocab_size),
            top_p=1.0 if greedy else float(request.top_p),
        )  # fmt: skip

        def cancel(finished: bool) -> None:
            slot.queues.pop(rid, None)
            if not finished:
                slot.manager.cancel_request(rid)

        return cancel

    def _submit_seeded(self, slot: Slot, request: GenerateRequest, ids: list[int], box: Any) -> Any:
        from transformers import GenerationConfig

        run = SeededRun(request, box)
        config = GenerationConfig(  # type: ignore[no-untyped-call]
            do_sample=False, max_new_tokens=request.max_tokens, eos_token_id=sorted(slot.eos),
            pad_token_id=slot.tokenizer.pad_token_id,
        )  # fmt: skip
        inputs = torch.tensor([ids], device=slot.model.device)

        def work() -> None:
            try:
                with torch.inference_mode():
                    slot.model.generate(
                        inputs, attention_mask=torch.ones_like(inputs), generation_config=config,
                        streamer=run, logits_processor=[run],
                        stopping_criteria=[lambda *_a, **_k: run.stopped.is_set()],
                    )  # fmt: skip
            except Exception as exc:  # surfaced to the consumer
                box.put(exc)

        threading.Thread(target=work, name="seeded-generate", daemon=True).start()
        return lambda _finished: run.stopped.set()

    def _stream(
        self, slot: Slot, request: GenerateRequest, ids: list[int], truncated: bool
    ) -> Iterator[Event]:
        box: queue.Queue[Any] = queue.Queue()
        cancel = self._submit(slot, request, ids, box)
        tokens: list[int] = []
        body: list[int] = []
        sent, done, stopped = 0, False, False
        try:
            while not done:
                item = box.get()  # the router or the seeded thread always ends with a final item
                error = item if isinstance(item, Exception) else getattr(item, "error", None)
                if error:
                    raise BackendUnavailable(f"Local generation failed: {error}")
                if item is None or isinstance(item, list):  # the seeded path
                    tokens, done = (tokens, True) if item is None else (item, False)
                else:
                    tokens, done = list(item.generated_tokens), item.is_finished()
                body = [t for t in tokens if t not in slot.eos]
                text = slot.tokenizer.decode(body, skip_special_tokens=True)
                cut = min((i for i in (text.find(s, sent) for s in request.stop if s) if i >= 0),
                          default=-1)  # fmt: skip
                stopped = cut >= 0 or bool(tokens and tokens[-1] in slot.eos)
                done = done or stopped
                end = cut if cut >= 0 else len(text)
                end -= 0 if done else held_back(text, sent, request.stop)
                if end > sent:
                    yield Token(text[sent:end])
                    sent = end
        finally:
            cancel(done)
        reason = "length" if not stopped and len(body) >= request.max_tokens else "stop"
        yield Done(len(ids), len(body), reason, backend=self.name, truncated_prompt=truncated)


def held_back(text: str, start: int, stops: tuple[str, ...]) -> int:
    """Characters to hold back: a half-decoded character or a tail that may begin a stop string."""
    if text.endswith("\ufffd"):
        return len(text) - len(text.rstrip("\ufffd"))
    held = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text) - start), held, -1):
            if text.endswith(stop[:k]):
                held = k
                break
    return held
