"""The machinery under LocalBackend: continuous-batching managers, seeded runs, stop text."""

from __future__ import annotations

import queue
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch

from bridge.types import GenerateRequest

# CPU: a fixed KV cache (32 pages x 256 tokens) instead of the 60% of RAM the manager would take.
CPU_BLOCKS = 32


class Batcher:
    """One ContinuousBatchingManager and the thread routing its outputs to per-request queues."""

    def __init__(self, model: Any, eos: list[int], pad: int | None, sample: bool) -> None:
        from transformers import GenerationConfig
        from transformers.generation.configuration_utils import ContinuousBatchingConfig

        # Sampling defaults must differ from 1.0 for the manager to build those processors at all.
        knobs = {"temperature": 0.7, "top_k": 50, "top_p": 0.9} if sample else {}
        config = GenerationConfig(  # type: ignore[no-untyped-call]
            do_sample=sample, max_new_tokens=256, eos_token_id=eos, pad_token_id=pad, **knobs
        )
        cpu = model.device.type == "cpu"
        self.cb = ContinuousBatchingConfig(
            per_request_processors=sample, auto_switch_to_flash=False,
            num_blocks=CPU_BLOCKS if cpu else None, max_batch_tokens=512 if cpu else None,
        )  # fmt: skip
        self.manager = model.init_continuous_batching(config, continuous_batching_config=self.cb)
        self.queues: dict[str, queue.Queue[Any]] = {}
        self.closing = threading.Event()
        self.router = threading.Thread(target=self.route, name="cb-router", daemon=True)
        self.manager.start()
        self.router.start()

    def route(self) -> None:
        """Hand each streamed output to the queue of the request it belongs to."""
        while not self.closing.is_set():
            out = self.manager.get_result(timeout=0.1)
            target = self.queues.get(out.request_id) if out is not None else None
            if target is not None:
                target.put(out)  # outputs of cancelled requests have no queue: dropped
            elif out is None and not self.manager.is_running():
                for target in list(self.queues.values()):
                    target.put(RuntimeError("the generation loop stopped"))
                self.closing.wait(0.1)

    def close(self) -> None:
        """Finish in-flight requests, then stop both threads."""
        self.manager.stop(block=True, timeout=10)
        self.manager.destroy()
        self.closing.set()
        self.router.join(timeout=5)


@dataclass(frozen=True)
class Probed:
    """A SeededRun's cumulative output with log-probabilities: the ids so far and, per id
    other than end-of-generation, ``{token, logprob, bytes, top_logprobs}`` (bridge.types.Token)."""

    ids: list[int]
    probs: tuple[dict[str, Any], ...]


class SeededRun:
    """One run alone through ``model.generate`` (seeded sampling, penalties, a grammar,
    logprobs): sampler, streamer and stop switch. ``constraint``: a logits processor applied
    first (the request's grammar, bridge/backends/engines/constraints.py), its own to this run.
    With ``request.logprobs`` each step records the drawn token's log-probability and its
    ``request.logprobs`` most likely alternatives: log_softmax of the scores after the grammar
    and the penalties, before temperature/top-k/top-p (those shape the draw, not the model's
    distribution, as llama-server's probabilities before sampling)."""

    def __init__(self, request: GenerateRequest, box: queue.Queue[Any],
                 constraint: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                 ) -> None:  # fmt: skip
        from transformers.generation import logits_process as lp

        self.constraint = constraint

        sample = request.temperature > 0
        # Penalties look at the answer only, as llama.cpp's sampler does (it never sees the prompt).
        self.penalties: list[Any] = []
        if request.repetition_penalty != 1.0:
            self.penalties.append(lp.RepetitionPenaltyLogitsProcessor(request.repetition_penalty))
        if request.frequency_penalty or request.presence_penalty:
            self.penalties.append(partial(openai_penalties, request.frequency_penalty,
                                          request.presence_penalty))  # fmt: skip
        self.warpers: list[Any] = []
        if sample:
            self.warpers.append(lp.TemperatureLogitsWarper(float(request.temperature)))
            self.warpers += [lp.TopKLogitsWarper(int(request.top_k))] if request.top_k else []
            self.warpers += [lp.TopPLogitsWarper(float(request.top_p))] if request.top_p < 1 else []
        self.sample, self.prompt_len = sample, 0
        seed = request.seed if request.seed is not None else secrets.randbits(63)  # unseeded
        self.generator = torch.Generator().manual_seed(int(seed))
        self.box, self.tokens, self.prompt_seen = box, list[int](), False
        self.stopped = threading.Event()
        self.top, self.probs = request.logprobs, list[dict[str, Any]]()
        self.vocab: Any = None  # the tokenizer, set by start() (token texts of logprobs)
        self.eos: frozenset[int] = frozenset()

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.constraint is not None:
            scores = self.constraint(input_ids, scores)
        generated = input_ids[:, self.prompt_len:]
        for penalty in self.penalties if generated.shape[1] else ():
            scores = penalty(generated, scores)
        model = scores
        for warp in self.warpers:
            scores = warp(input_ids, scores)
        if self.sample:
            drawn = torch.multinomial(scores.float().softmax(-1), 1, generator=self.generator)
        else:
            drawn = scores.argmax(-1, keepdim=True)
        if self.top is not None and int(drawn[0, 0]) not in self.eos:
            self.probs.append(self.entry(model[0].float().log_softmax(-1), int(drawn[0, 0])))
        return torch.full_like(scores, float("-inf")).scatter(1, drawn, 0.0)

    def entry(self, logprobs: torch.Tensor, token: int) -> dict[str, Any]:
        """OpenAI's entry for ``token`` from one step's log-probabilities (shape [vocab])."""
        def one(i: int, logprob: float) -> dict[str, Any]:
            text: str = self.vocab.decode([i])
            return {"token": text, "logprob": logprob, "bytes": list(text.encode())}

        best = logprobs.topk(self.top or 0) if self.top else None
        alternatives = [] if best is None else [
            one(int(i), float(v)) for v, i in zip(best.values.tolist(), best.indices.tolist(),
                                                  strict=True)]  # fmt: skip
        return {**one(token, float(logprobs[token])), "top_logprobs": alternatives}

    def put(self, value: torch.Tensor) -> None:
        if self.prompt_seen:
            self.tokens.extend(int(t) for t in value.reshape(-1).tolist())
            tokens = list(self.tokens)
            self.box.put(tokens if self.top is None else Probed(tokens, tuple(self.probs)))
        self.prompt_seen = True  # generate() streams the prompt first

    def end(self) -> None:
        self.box.put(None)

    def start(self, slot: Slot, ids: list[int], max_tokens: int,
              ended: Callable[[], None]) -> Callable[[bool], None]:
        """Generate on a thread (greedy over the one token this sampler keeps), calling
        ``ended`` once the model is free again; returns cancel."""
        self.prompt_len, self.ended = len(ids), ended
        self.vocab, self.eos = slot.tokenizer, slot.eos
        inputs = torch.tensor([ids], device=slot.model.device)
        kwargs = {"do_sample": False, "max_new_tokens": max_tokens, "streamer": self,
                  "eos_token_id": sorted(slot.eos), "pad_token_id": slot.tokenizer.pad_token_id,
                  "logits_processor": [self],
                  "stopping_criteria": [lambda *_a, **_k: self.stopped.is_set()]}  # fmt: skip
        threading.Thread(target=self.work, args=(slot, inputs, kwargs), daemon=True).start()
        return lambda _finished: self.stopped.set()

    def work(self, slot: Slot, inputs: torch.Tensor, kwargs: dict[str, Any]) -> None:
        """The thread's body; errors go to the consumer's queue."""
        # The engine's Gate has stopped every batcher: this thread alone uses the model.
        try:
            with torch.inference_mode():
                slot.model.generate(inputs, attention_mask=torch.ones_like(inputs), **kwargs)
        except Exception as exc:
            self.box.put(exc)
        finally:
            self.ended()


def openai_penalties(frequency: float, presence: float, generated: torch.Tensor,
                     scores: torch.Tensor) -> torch.Tensor:
    """OpenAI's additive penalties: minus ``frequency`` per earlier use of a token in the
    answer, minus ``presence`` once it appeared at all (llama.cpp's penalties alike)."""
    counts = torch.zeros_like(scores).scatter_add_(
        1, generated.long(), torch.ones_like(generated, dtype=scores.dtype)
    )
    return scores - counts * frequency - (counts > 0).to(scores.dtype) * presence


@dataclass(eq=False)
class Slot:
    """One loaded model: weights, tokenizer and its batchers (greedy, sampling)."""

    model: Any
    tokenizer: Any
    settings: tuple[str, str]
    context: int
    eos: frozenset[int]
    batchers: dict[bool, Batcher] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def batcher(self, sample: bool) -> Batcher:
        """The greedy or the sampling batcher, started on first use."""
        with self.lock:
            if sample not in self.batchers:
                pad = self.tokenizer.pad_token_id
                self.batchers[sample] = Batcher(self.model, sorted(self.eos), pad, sample)
            return self.batchers[sample]
