"""The engines under LocalBackend: transformers (HF folders, CUDA, bitsandbytes, continuous
batching) and llama.cpp (GGUF files on CPU, in llama.cpp's own ``llama-server`` subprocess).

An engine holds one loaded model and turns prompt token ids into a stream on a queue: cumulative
token lists (LocalBackend detokenizes them) or cumulative ``Piece``s (the engine decoded the text
itself); LocalBackend does the rest (templates, context, stop strings, events) once.
Which engine serves is decided here, per model format and device: a GGUF on CPU goes to
llama.cpp (4-9x transformers fp32 on the same weights, benchmarks/), everything else to
transformers. A load's ``engine`` parameter or ``BRIDGE_ENGINE`` overrides it.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bridge.backends.engines.llama_server import BUILD_HINT
from bridge.errors import (
    BackendUnavailable,
    BridgeError,
    ContextLengthExceeded,
    NotSupported,
)
from bridge.types import Done, Event, GenerateRequest, Token

ENGINES = ("transformers", "llama.cpp")

# Called with False when the consumer stops early (cancel), True when it read the end.
Cancel = Callable[[bool], None]


class Engine(Protocol):
    """One loaded model under LocalBackend."""

    name: str
    context: int
    eos: frozenset[int]
    settings: tuple[str, str, str]  # (engine, device, quantization)

    def tokenize(self, text: str) -> list[int]: ...

    def detokenize(self, ids: list[int]) -> str: ...

    def template(self, messages: list[dict[str, str]]) -> str: ...

    def submit(self, request: GenerateRequest, ids: list[int], box: queue.Queue[Any]) -> Cancel:
        """Start generating; put cumulative token lists on ``box``, then None (or an error)."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Piece:
    """Cumulative output of an engine that decodes its own text: tokens so far (end-of-
    generation excluded), their text, whether it ended at end-of-generation, whether it ended."""

    tokens: int
    text: str
    eos: bool = False
    final: bool = False
    probs: tuple[dict[str, Any], ...] = ()  # per token so far, with GenerateRequest.logprobs


@dataclass(eq=False)
class Loaded:
    """A loaded engine and its use: streams in flight and when it was last used."""

    engine: Engine
    active: int = 0
    last_used: float = field(default_factory=time.monotonic)
    keep_alive: float | None = None  # idle seconds before it unloads (None: the backend's)
    options: dict[str, Any] = field(default_factory=dict)  # what its load asked for


def gguf_in(path: Path) -> Path | None:
    """The GGUF file a model folder (or file) holds, when it holds no HF weights."""
    if path.is_file():
        return path if path.suffix == ".gguf" else None
    if (path / "config.json").exists():
        return None
    found = sorted(path.glob("*.gguf"))
    return found[0] if found else None


def choose_engine(requested: str, device: str, has_gguf: bool, missing: str | None = None) -> str:
    """The engine for a model: the one asked for, else llama.cpp for a GGUF on CPU (when
    its server is installed: ``missing`` says why not), else transformers. NotSupported when
    the one asked for cannot serve."""
    if requested not in ("auto", *ENGINES):
        raise NotSupported(f"Unknown engine {requested!r}: one of auto, {', '.join(ENGINES)}")
    if requested == "llama.cpp":
        if missing:
            raise NotSupported(missing, details={"install": BUILD_HINT})
        if not has_gguf:
            raise NotSupported("The llama.cpp engine serves GGUF models; this one has no .gguf")
        if device != "cpu":
            raise NotSupported("This llama.cpp build serves on CPU; use the transformers engine "
                               "for CUDA")  # fmt: skip
        return requested
    if requested == "transformers":
        return requested
    fits = has_gguf and device == "cpu" and not missing
    return "llama.cpp" if fits else "transformers"


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


def encode(engine: Engine, request: GenerateRequest,
           context: int | None = None) -> tuple[list[int], bool]:  # fmt: skip
    """Prompt ids that leave room for ``max_tokens`` in ``context`` tokens (default: the
    engine's); ContextLengthExceeded (naming that size) unless the request opted into
    truncation, which drops the oldest turns (never the system prompt, the last turn or the
    chat template) or, for a plain prompt, its start."""
    context = context or engine.context
    messages = [{"role": m.role, "content": m.content} for m in request.messages]
    messages = messages or [{"role": "user", "content": request.prompt}]

    def ids_of(turns: list[dict[str, str]]) -> list[int]:
        text = engine.template(turns) if request.chat else request.prompt
        return engine.tokenize(text + request.prefill)

    ids = ids_of(messages)
    room = context - request.max_tokens
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
        f"This model's context is {context} tokens; the prompt takes {len(ids)} "
        f"and max_tokens asks for {request.max_tokens} more. Shorten the prompt, lower "
        "max_tokens, ask for truncation, or load the model with a larger context.",
        details={"prompt_tokens": len(ids), "max_tokens": request.max_tokens,
                 "context": context},
    )


def stream(engine: Engine, request: GenerateRequest, ids: list[int],
           truncated: bool) -> Iterator[Event]:  # fmt: skip
    """Token events from ``engine`` for prompt ``ids``, then one Done: stop strings cut the
    text (and the generation), a tail that may begin one is held back, and a character split
    between tokens waits for its last byte. BackendUnavailable when the engine fails."""
    box: queue.Queue[Any] = queue.Queue()
    try:
        cancel = engine.submit(request, ids, box)
    except RuntimeError as exc:  # unloaded between our look-up and the submit
        raise BackendUnavailable(f"Local generation failed: {exc}") from exc
    tokens: list[int] = []
    sent, count, finished, stopped = 0, 0, False, False
    probs: tuple[dict[str, Any], ...] = ()
    given = 0  # entries of ``probs`` already attached to a Token
    try:
        while not (finished or stopped):
            item = box.get()  # every engine ends with None, an error or a finished output
            error = item if isinstance(item, Exception) else getattr(item, "error", None)
            if isinstance(error, BridgeError) and not isinstance(error, BackendUnavailable):
                raise error  # the request's fault (a schema the engine refused), not the engine's
            if error:
                raise BackendUnavailable(f"Local generation failed: {error}")
            if isinstance(item, Piece):  # the engine decoded the text itself
                count, text, eos, finished = item.tokens, item.text, item.eos, item.final
                probs = item.probs
            else:
                if not isinstance(item, list) and hasattr(item, "probs"):  # batching.Probed
                    item, probs = item.ids, item.probs
                if item is None or isinstance(item, list):  # cumulative ids, then None
                    tokens, finished = (tokens, True) if item is None else (item, False)
                else:
                    tokens, finished = list(item.generated_tokens), item.is_finished()
                text = engine.detokenize([t for t in tokens if t not in engine.eos])
                eos = bool(tokens and tokens[-1] in engine.eos)
                count = len([t for t in tokens if t not in engine.eos])
            cut = min((i for i in (text.find(s, sent) for s in request.stop if s) if i >= 0),
                      default=-1)  # fmt: skip
            finished, stopped = finished or eos, cut >= 0 or eos
            end = cut if cut >= 0 else len(text)
            end -= 0 if finished or stopped else held_back(text, sent, request.stop)
            # a multi-byte character cut between tokens decodes as U+FFFD: wait for
            # its last byte, or drop it when the answer ends there (max_tokens)
            end = len(text[:end].rstrip("\ufffd")) if end == len(text) else end
            if end > sent:
                yield Token(text[sent:end], probs[given:])
                sent, given = end, len(probs)
    finally:
        cancel(finished)
    reason = "length" if not stopped and count >= request.max_tokens else "stop"
    yield Done(len(ids), count, reason, backend="local", truncated_prompt=truncated,
               engine=engine.name)
