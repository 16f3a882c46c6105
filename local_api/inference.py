"""One generation, whatever surface asked for it: validate, route, time, store, cache."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from flask import current_app

from bridge.errors import ValidationError
from bridge.types import BackendSwitched, Done, Event, GenerateRequest, Message, Token
from local_api import conversations
from local_api.compute import compute
from local_api.identity import Identity
from local_api.observability import observe
from local_api.timeutil import duration

_stop = {"type": "string", "minLength": 1, "maxLength": 64}
PARAMETERS: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "top_k": {"type": "integer", "minimum": 0, "maximum": 1000},
        "max_tokens": {"type": "integer", "minimum": 1},
        "stop": {"anyOf": [_stop, {"type": "array", "items": _stop, "maxItems": 4}]},
        "seed": {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
    },
}
PROMPT = {"type": "string", "minLength": 1, "maxLength": 200_000}
MODEL_ID = {"type": "string", "minLength": 1, "maxLength": 128}
CONVERSATION_ID = {"type": "string", "minLength": 1, "maxLength": 40}


@dataclass
class Job:
    """A validated generation and what it produced so far."""

    who: Identity
    request: GenerateRequest
    prompt: str
    conversation_id: str | None
    started: float = field(default_factory=time.perf_counter)
    parts: list[str] = field(default_factory=list)
    switches: list[dict[str, str]] = field(default_factory=list)


def prepare(
    who: Identity,
    *,
    model: str | None,
    prompt: str,
    parameters: dict[str, Any] | None,
    conversation_id: str | None,
) -> Job:
    """Build the request from the API's prompt + parameters, then check it (prepare_request)."""
    params = parameters or {}
    stop = params.get("stop", ())
    request = GenerateRequest(
        model=model or current_app.config["SETTINGS"].default_model,
        messages=(Message("user", prompt),),
        max_tokens=params.get("max_tokens", 256),
        temperature=float(params.get("temperature", 0.7)),
        top_p=float(params.get("top_p", 1.0)),
        top_k=int(params.get("top_k", 0)),
        stop=(stop,) if isinstance(stop, str) else tuple(stop),
        seed=params.get("seed"),
    )
    return prepare_request(who, request, prompt=prompt, conversation_id=conversation_id)


def prepare_request(
    who: Identity, request: GenerateRequest, *, prompt: str, conversation_id: str | None = None
) -> Job:
    """Check the model and the token limit, prepend the stored history, make the Job."""
    limit = current_app.config["SETTINGS"].max_tokens_limit
    if request.max_tokens > limit:
        raise ValidationError(
            f"parameters.max_tokens must be at most {limit}",
            details={"field": "parameters.max_tokens", "max": limit},
        )
    compute().require_model(request.model)
    if conversation_id:
        past = conversations.history(conversation_id, who.user_id)
        request = replace(request, messages=(*past, *request.messages))
    return Job(who, request, prompt, conversation_id)


def events(job: Job) -> Iterator[Event]:
    """The routed stream; tokens and backend switches are remembered on the job (and counted)."""
    for event in compute().router.generate(job.request):
        observe(event)
        if isinstance(event, Token):
            job.parts.append(event.text)
        elif isinstance(event, BackendSwitched):
            job.switches.append(
                {"from": event.from_backend, "to": event.to_backend, "reason": event.reason}
            )
        yield event


def finish(job: Job, done: Done) -> dict[str, Any]:
    """Store the exchange and describe it: text, usage, backend, metrics, conversation."""
    elapsed = time.perf_counter() - job.started
    text = "".join(job.parts)
    job.conversation_id = conversations.append(
        job.conversation_id,
        job.who.user_id,
        job.request.model,
        job.prompt,
        text,
        backend=done.backend,
        tokens=done.completion_tokens,
    )
    return describe(job, text, done.backend, done.prompt_tokens, done.completion_tokens,
                    done.finish_reason, done.truncated_prompt, elapsed)


def describe(
    job: Job,
    text: str,
    backend: str,
    prompt_tokens: int,
    completion_tokens: int,
    finish_reason: str,
    truncated: bool,
    elapsed: float,
) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "text": text,
        "model": job.request.model,
        "conversation_id": job.conversation_id,
        "backend": backend,
        "finish_reason": finish_reason,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
        "metrics": {
            "response_time": duration(round(elapsed, 3)),
            "tokens_per_second": round(completion_tokens / elapsed, 2) if elapsed > 0 else None,
        },
        "elapsed": elapsed,
    }
    if truncated:
        answer["prompt_truncated"] = True
    if job.switches:
        answer["backend_switches"] = job.switches
    return answer
