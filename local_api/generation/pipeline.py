"""The one generation pipeline every surface goes through (FT, AQ, OpenAI, Ollama, /ws).

A surface decodes its dialect into a ``GenerateRequest`` and calls ``start``, then encodes
the events of ``open_stream`` (or the answer of ``complete``) back. In between, once:

    validate -> resolve the model -> cache lookup -> route -> stream -> store the
    conversation -> cache store -> metrics

Errors before the first event raise from ``start``/``open_stream`` (a real HTTP status);
``encode_stream`` (bridge.streaming, shared with the worker) turns a later one into one
more item of the surface's own stream.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from flask import current_app

from bridge import params
from bridge.errors import BackendUnavailable, ValidationError
from bridge.reasoning import separate
from bridge.streaming import UNFINISHED, Primed
from bridge.types import (
    BackendSwitched,
    Done,
    Event,
    GenerateRequest,
    Message,
    Reasoning,
    Token,
    ToolCall,
)
from local_api.accounts.identity import Identity
from local_api.generation import cache, conversations, embeddings
from local_api.generation.compute import compute
from local_api.generation.tools import ToolSet, calls_text, constrain, parse
from local_api.system.metrics import observe
from local_api.timeutil import duration

PARAMETERS = params.SCHEMA
PROMPT = {"type": "string", "minLength": 1, "maxLength": params.TEXT_MAX}
MODEL_ID = {"type": "string", "minLength": 1, "maxLength": 128}
CONVERSATION_ID = {"type": "string", "minLength": 1, "maxLength": 40}
DEFAULT_MAX_TOKENS = 256
DEFAULT_TEMPERATURE = 0.7


@dataclass
class Job:
    """A validated generation and what it produced so far."""

    who: Identity
    request: GenerateRequest
    prompt: str  # the user's turn, as stored in the conversation
    conversation_id: str | None
    cache_key: str | None = None  # None: not cacheable (sampled, or the client said no-cache)
    hit: tuple[dict[str, Any], int] | None = None
    started: float = field(default_factory=time.perf_counter)
    parts: list[str] = field(default_factory=list)
    logprobs: list[dict[str, Any]] = field(default_factory=list)
    switches: list[dict[str, str]] = field(default_factory=list)
    answer: dict[str, Any] | None = None
    tools: ToolSet | None = None  # a tool request: the answer is parsed into tool calls
    calls: list[ToolCall] = field(default_factory=list)
    turns: tuple[Message, ...] = ()  # stored instead of the user's prompt (tool results)
    reasoning: list[str] = field(default_factory=list)  # <think> text (bridge.reasoning)

    @property
    def cache_status(self) -> str:
        """HIT, MISS (stored once finished) or BYPASS, known before the first byte."""
        return "HIT" if self.hit else "MISS" if self.cache_key else "BYPASS"


def request_from_parameters(model: str | None, prompt: str,
                            parameters: dict[str, Any] | None) -> GenerateRequest:
    """FT/AQ/ws ``prompt`` + ``parameters`` as a request (defaults where omitted)."""
    p = parameters or {}
    stop = p.get("stop", ())
    return GenerateRequest(
        model=model or current_app.config["SETTINGS"].default_model,
        messages=(Message("user", prompt),),
        max_tokens=p.get("max_tokens", DEFAULT_MAX_TOKENS),
        temperature=float(p.get("temperature", DEFAULT_TEMPERATURE)),
        top_p=float(p.get("top_p", 1.0)),
        top_k=int(p.get("top_k", 0)),
        stop=(stop,) if isinstance(stop, str) else tuple(stop),
        seed=p.get("seed"),
        repetition_penalty=float(p.get("repetition_penalty", 1.0)),
        frequency_penalty=float(p.get("frequency_penalty", 0.0)),
        presence_penalty=float(p.get("presence_penalty", 0.0)),
        truncate=bool(p.get("truncate", False)),
        defaulted=params.omitted(p),
    )


def start(
    who: Identity,
    request: GenerateRequest,
    *,
    prompt: str,
    conversation_id: str | None = None,
    names: dict[str, str] | None = None,
    tools: ToolSet | None = None,
    turns: tuple[Message, ...] = (),
) -> Job:
    """Validate, resolve the model, prepend the stored history and look in the cache.

    ``turns``: what the conversation stores before the answer instead of the user's
    ``prompt`` (a native tool-results turn's ``tool`` messages). ``names`` spells the
    request's fields as the surface's dialect does, for errors (``{"top_p":
    "parameters.top_p"}``). Raises ValidationError, ModelNotFound.
    """
    limit = current_app.config["SETTINGS"].max_tokens_limit
    params.check(request, names)
    if request.max_tokens > limit:
        shown = (names or {}).get("max_tokens", "max_tokens")
        raise ValidationError(f"{shown} must be at most {limit}",
                              details={"field": shown, "max": limit})
    compute().require_model(request.model)
    embeddings.require_kind(request.model, "chat")
    # The model's catalog defaults (FT's ``parameters``) for what the client left out.
    request = params.with_defaults(request, compute().store.defaults(request.model))
    if conversation_id:
        past = conversations.history(conversation_id, who.user_id)
        request = replace(request, messages=(*past, *request.messages))
    active = tools is not None and tools.active()
    if active:
        assert tools is not None
        request = constrain(request, tools)
    job = Job(who, request, prompt, conversation_id, tools=tools if active else None,
              turns=turns)
    if cache.wanted(request) and not active:
        job.cache_key = cache.key_for(who.user_id, request)
        job.hit = cache.get(job.cache_key)
    return job


def _events(job: Job) -> Iterator[Event]:
    if job.hit is not None:
        stored = job.hit[0]
        job.parts.append(stored["text"])
        usage = stored["usage"]
        done = Done(usage["prompt_tokens"], usage["completion_tokens"],
                    stored["finish_reason"], stored["backend"])
        if stored.get("reasoning"):
            job.reasoning.append(stored["reasoning"])
            yield Reasoning(stored["reasoning"])
        if stored["text"]:
            yield Token(stored["text"])
        _finish(job, done)
        yield done
        return
    for event in separate(compute().router.generate(job.request)):
        observe(event)
        if job.tools is not None and isinstance(event, Token | Done):
            yield from _tool_answer(job, event)
            if isinstance(event, Done):
                return
            continue
        if isinstance(event, Token):
            job.parts.append(event.text)
            job.logprobs.extend(event.logprobs)
        elif isinstance(event, Reasoning):
            job.reasoning.append(event.text)
        elif isinstance(event, BackendSwitched):
            job.switches.append(
                {"from": event.from_backend, "to": event.to_backend, "reason": event.reason}
            )
        elif isinstance(event, Done):
            _finish(job, event)
            yield event
            return
        yield event
    raise BackendUnavailable(UNFINISHED)


def _tool_answer(job: Job, event: Token | Done) -> Iterator[Event]:
    """A tool request's answer is read whole, then given as its text and its tool calls."""
    if isinstance(event, Token):
        job.parts.append(event.text)
        return
    text, job.calls = parse("".join(job.parts))
    job.parts = [text]
    if text:
        yield Token(text)
    yield from job.calls
    if job.calls and event.finish_reason == "stop":
        event = replace(event, finish_reason="tool_calls")
    _finish(job, event)
    yield event


def open_stream(job: Job) -> Primed:
    """The job's events, the first drawn already (errors before any byte raise here)."""
    return Primed(_events(job))


def complete(job: Job) -> dict[str, Any]:
    """Run the job to its end; the answer (as ``describe`` builds it)."""
    stream = open_stream(job)
    try:
        for _event in stream:
            pass
    finally:
        stream.close()
    assert job.answer is not None
    return job.answer


def _finish(job: Job, done: Done) -> None:
    """Store the exchange, describe it, and cache it when it came out whole."""
    elapsed = time.perf_counter() - job.started
    text = "".join(job.parts)
    # a tool-call answer is stored as the text the model answers calls in, so that a later
    # turn of the conversation shows the model its own call
    job.conversation_id = conversations.append(
        job.conversation_id, job.who.user_id, job.request.model, job.prompt,
        calls_text(job.calls) if job.calls else text, backend=done.backend,
        tokens=done.completion_tokens, turns=job.turns,
    )
    answer = describe(job, text, done, elapsed)
    if job.hit is not None:
        answer["cache"] = {"status": "HIT", "ttl": duration(job.hit[1])}
    elif job.cache_key and not job.switches:  # a failed-over answer is never cached
        ttl = cache.put(job.cache_key, {"text": text, "usage": answer["usage"],
                                        "finish_reason": done.finish_reason,
                                        "backend": done.backend,
                                        "reasoning": "".join(job.reasoning)})
        answer["cache"] = {"status": "MISS", "ttl": duration(ttl)}
    job.answer = answer


def describe(job: Job, text: str, done: Done, elapsed: float) -> dict[str, Any]:
    """The answer every surface encodes: text, usage, backend, metrics, conversation."""
    p, c = done.prompt_tokens, done.completion_tokens
    answer: dict[str, Any] = {
        "text": text,
        "model": job.request.model,
        "conversation_id": job.conversation_id,
        "backend": done.backend,
        "finish_reason": done.finish_reason,
        "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c},
        "metrics": {
            "response_time": duration(round(elapsed, 3)),
            "tokens_per_second": round(c / elapsed, 2) if elapsed > 0 else None,
        },
        "elapsed": elapsed,
    }
    if done.engine:
        answer["engine"] = done.engine
    if job.request.logprobs is not None:
        answer["logprobs"] = job.logprobs
    if done.truncated_prompt:
        answer["prompt_truncated"] = True
    if job.switches:
        answer["backend_switches"] = job.switches
    if job.reasoning:
        answer["reasoning"] = "".join(job.reasoning)
    if job.calls:
        answer["tool_calls"] = [{"id": c.id, "type": "function", "function": {
            "name": c.name, "arguments": c.arguments}} for c in job.calls]
    return answer

