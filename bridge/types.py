"""Request and event types shared by every backend, the router and the wire format.

A backend turns one ``GenerateRequest`` into a stream of events: zero or more
``Token`` events, then exactly one ``Done``. A non-streaming answer is the joined
stream (``collect``), never a second code path.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class Message:
    role: str
    content: str


@dataclass(frozen=True)
class GenerateRequest:
    """One generation: a plain prompt, or chat messages rendered with the model's template."""

    model: str
    prompt: str = ""
    messages: tuple[Message, ...] = ()
    max_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 1.0
    top_k: int = 0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    # Penalties against repetition: transformers' multiplicative one (1.0 = off) and
    # OpenAI's additive ones (0.0 = off), the same meaning on every engine.
    repetition_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    # Opt-in: drop the oldest turns (never the system prompt or the template) to fit the
    # context, and say so in ``Done.truncated_prompt``; otherwise ContextLengthExceeded.
    truncate: bool = False
    # Text already produced by another backend: continue after it (failover prefill).
    prefill: str = ""
    chat: bool = True
    # The sampling parameters (bridge.params.DEFAULTABLE) the client left out: the pipeline
    # fills them from the model's catalog defaults, then clears this (a worker gets ()).
    defaulted: tuple[str, ...] = ()
    # Structured output: the JSON schema the answer must match, as compact JSON text ("" for
    # none; bridge.structured checks it). The engine constrains decoding to it.
    json_schema: str = ""
    # Log-probabilities of the generated tokens: None off, else how many most likely
    # alternatives each token lists beside it (0-20, OpenAI's top_logprobs).
    logprobs: int | None = None
    # Tokens of context the request asks for (Ollama's ``options.num_ctx``): a model loaded
    # with less is reloaded with this much (capped by its training context); a smaller value
    # limits this request alone. None: the context the model is loaded with.
    num_ctx: int | None = None

    @property
    def deterministic(self) -> bool:
        return self.temperature == 0 or self.seed is not None


@dataclass(frozen=True)
class Token:
    text: str
    # With GenerateRequest.logprobs: the tokens decoded since the last Token event, each
    # {token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]} (OpenAI's shape).
    logprobs: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class ToolCall:
    """One tool call of an answer: its position, id, the function's name and its arguments
    (a JSON object's text). The pipeline makes these from a tool request's answer."""

    index: int
    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Reasoning:
    """Thinking text a model wrote before its answer (``<think>…</think>``), separated from
    the answer's tokens by the pipeline (bridge.reasoning); backends never emit it."""

    text: str


@dataclass(frozen=True)
class BackendSwitched:
    from_backend: str
    to_backend: str
    reason: str


@dataclass(frozen=True)
class Done:
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str = "stop"  # "stop" | "length" | "tool_calls"
    backend: str = ""
    truncated_prompt: bool = False
    engine: str = ""  # the local engine that answered (llama.cpp, transformers); "" for others


Event = Token | BackendSwitched | Done | ToolCall | Reasoning


@runtime_checkable
class Backend(Protocol):
    """Anything that can answer a ``GenerateRequest``: local model, remote worker, OpenAI server."""

    name: str

    def ready(self) -> bool: ...

    def generate(self, request: GenerateRequest) -> Iterator[Event]: ...


@dataclass
class Completion:
    """A joined stream."""

    text: str
    done: Done
    events: list[Event] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"text": self.text, "backend": self.done.backend}


def collect(events: Iterable[Event]) -> Completion:
    """Join a stream of events into one answer."""
    parts: list[str] = []
    seen: list[Event] = []
    done: Done | None = None
    for event in events:
        seen.append(event)
        if isinstance(event, Token):
            parts.append(event.text)
        elif isinstance(event, Done):
            done = event
    if done is None:
        from bridge.errors import BackendUnavailable

        raise BackendUnavailable("The backend ended its answer without finishing it")
    return Completion(text="".join(parts), done=done, events=seen)
