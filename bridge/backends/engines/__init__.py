"""The engines under LocalBackend: transformers (HF folders, CUDA, bitsandbytes, continuous
batching) and llama.cpp (GGUF files on CPU, through llama-cpp-python).

An engine holds one loaded model and turns prompt token ids into a stream of cumulative token
lists on a queue; LocalBackend does the rest (templates, context, stop strings, events) once.
Which engine serves is decided here, per model format and device: a GGUF on CPU goes to
llama.cpp (4-7x transformers fp32 on the same weights, benchmarks/), everything else to
transformers. A load's ``engine`` parameter or ``BRIDGE_ENGINE`` overrides it.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bridge.errors import ContextLengthExceeded, NotSupported
from bridge.types import GenerateRequest

ENGINES = ("transformers", "llama.cpp")
LLAMA_CPP_HINT = 'CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install llama-cpp-python==0.3.36'

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


@dataclass(eq=False)
class Loaded:
    """A loaded engine and its use: streams in flight and when it was last used."""

    engine: Engine
    active: int = 0
    last_used: float = field(default_factory=time.monotonic)


def llama_cpp_missing() -> str | None:
    """Why llama.cpp cannot serve here (with how to get it), or None when it can."""
    try:
        import llama_cpp  # noqa: F401
    except Exception as exc:  # ImportError, or OSError from a broken shared library
        return (f"llama-cpp-python is not available ({type(exc).__name__}: {exc}); "
                f"install it with: {LLAMA_CPP_HINT}")[:400]  # fmt: skip
    return None


def gguf_in(path: Path) -> Path | None:
    """The GGUF file a model folder (or file) holds, when it holds no HF weights."""
    if path.is_file():
        return path if path.suffix == ".gguf" else None
    if (path / "config.json").exists():
        return None
    found = sorted(path.glob("*.gguf"))
    return found[0] if found else None


def choose_engine(requested: str, device: str, has_gguf: bool) -> str:
    """The engine for a model: the one asked for, else llama.cpp for a GGUF on CPU (when
    installed), else transformers. NotSupported when the one asked for cannot serve."""
    if requested not in ("auto", *ENGINES):
        raise NotSupported(f"Unknown engine {requested!r}: one of auto, {', '.join(ENGINES)}")
    if requested == "llama.cpp":
        missing = llama_cpp_missing()
        if missing:
            raise NotSupported(missing, details={"install": LLAMA_CPP_HINT})
        if not has_gguf:
            raise NotSupported("The llama.cpp engine serves GGUF models; this one has no .gguf")
        if device != "cpu":
            raise NotSupported("This llama.cpp build serves on CPU; use the transformers engine "
                               "for CUDA")  # fmt: skip
        return requested
    if requested == "transformers":
        return requested
    fits = has_gguf and device == "cpu" and not llama_cpp_missing()
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


def encode(engine: Engine, request: GenerateRequest) -> tuple[list[int], bool]:
    """Prompt ids that leave room for ``max_tokens``; ContextLengthExceeded unless the
    request opted into truncation, which drops the oldest turns (never the system
    prompt, the last turn or the chat template) or, for a plain prompt, its start."""
    messages = [{"role": m.role, "content": m.content} for m in request.messages]
    messages = messages or [{"role": "user", "content": request.prompt}]

    def ids_of(turns: list[dict[str, str]]) -> list[int]:
        text = engine.template(turns) if request.chat else request.prompt
        return engine.tokenize(text + request.prefill)

    ids = ids_of(messages)
    room = engine.context - request.max_tokens
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
        f"This model's context is {engine.context} tokens; the prompt takes {len(ids)} "
        f"and max_tokens asks for {request.max_tokens} more. Shorten the prompt, lower "
        "max_tokens, or ask for truncation.",
        details={"prompt_tokens": len(ids), "max_tokens": request.max_tokens,
                 "context": engine.context},
    )
