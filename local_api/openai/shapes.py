"""OpenAI's wire shapes for /v1: request schemas, GenerateRequest building, answers, errors."""

from __future__ import annotations

import re
import secrets
import time
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from bridge import errors, params
from bridge.types import GenerateRequest, Message
from local_api.openai import formats, logprobs
from local_api.openai.errors import param_name
from local_api.validation import check

# OpenAI leaves max_tokens open-ended; a bound keeps an omitted one from filling the context.
DEFAULT_MAX_TOKENS = 1024
DEFAULT_TEMPERATURE = 0.7  # the service's default (models' catalog entries say the same)
ROLES = ("system", "developer", "user", "assistant", "tool")
_PARAM_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # names safe to echo in a header
# Fields this surface acts on; any other field present is accepted, ignored and named in
# the X-Bridge-Ignored-Params header (frequency_penalty, presence_penalty, logit_bias, user, ...).
USED = frozenset(
    {
        "model",
        "messages",
        "prompt",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "top_k",
        "stop",
        "seed",
        "n",
        "stream",
        "stream_options",
        "frequency_penalty",
        "presence_penalty",
        "truncate",
        "response_format",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "logprobs",
        "top_logprobs",
    }
)

_count = {"type": ["integer", "null"], "minimum": 1}
MAX_CHOICES = 8  # n, at most (choices.py)
_stop = {"type": "string", "minLength": 1, "maxLength": 64}
_COMMON: dict[str, Any] = {
    "model": {"type": ["string", "null"], "minLength": 1, "maxLength": 128},
    "max_tokens": _count,
    "max_completion_tokens": _count,
    "temperature": {"type": ["number", "null"], "minimum": 0, "maximum": 2},
    "top_p": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 1},
    "top_k": {"type": ["integer", "null"], "minimum": 0, "maximum": 1000},
    "stop": {
        "type": ["string", "array", "null"],
        "minLength": 1,
        "maxLength": 64,
        "items": _stop,
        "maxItems": 4,
    },
    "seed": {"type": ["integer", "null"], "minimum": 0, "maximum": 2**32 - 1},
    "n": _count,
    "stream": {"type": ["boolean", "null"]},
    "stream_options": {
        "type": ["object", "null"],
        "properties": {"include_usage": {"type": ["boolean", "null"]}},
    },
    "user": {"type": ["string", "null"], "maxLength": 256},
    "frequency_penalty": {"type": ["number", "null"], "minimum": -2, "maximum": 2},
    "presence_penalty": {"type": ["number", "null"], "minimum": -2, "maximum": 2},
    "logit_bias": {"type": ["object", "null"]},
    # not OpenAI's: opt into dropping the oldest turns when the prompt overflows (Ollama's)
    "truncate": {"type": ["boolean", "null"]},
}
_MESSAGE = {
    "type": "object",
    "required": ["role"],
    "properties": {
        "role": {"type": "string", "enum": list(ROLES)},
        "content": {
            "type": ["string", "array", "null"],
            "maxLength": 200_000,
            "items": {"type": "object", "required": ["type"]},
        },
        "name": {"type": "string"},
    },
}
CHAT: dict[str, Any] = {
    "type": "object",
    "required": ["messages"],
    "properties": {
        **_COMMON,
        "messages": {"type": "array", "minItems": 1, "maxItems": 1000, "items": _MESSAGE},
        "logprobs": {"type": ["boolean", "null"]},
        "top_logprobs": {"type": ["integer", "null"], "minimum": 0, "maximum": 20},
        "response_format": {"type": ["object", "null"]},
        "tools": {"type": ["array", "null"]},
        "functions": {"type": ["array", "null"]},
    },
}
COMPLETION: dict[str, Any] = {
    "type": "object",
    "required": ["prompt"],
    "properties": {
        **_COMMON,
        "prompt": {
            "type": ["string", "array"],
            "minLength": 1,
            "maxLength": 200_000,
            "minItems": 1,
            "items": {"type": "string", "minLength": 1},
        },
        "echo": {"type": ["boolean", "null"]},
        "suffix": {"type": ["string", "null"]},
        "best_of": _count,
        "logprobs": {"type": ["integer", "null"], "minimum": 0, "maximum": 5},
        "response_format": {"type": ["object", "null"]},
    },
}


def _refuse(message: str, param: str) -> errors.ValidationError:
    return errors.ValidationError(message, details={"field": param})


def validate(body: dict[str, Any], schema: dict[str, Any]) -> None:
    """Check a body against CHAT or COMPLETION; the error names the param OpenAI's way."""
    try:
        check(body, schema)
    except errors.ValidationError as exc:
        field = exc.details.get("field")
        param = param_name(field)
        message = exc.message
        if field and param and message.startswith(f"{field}: "):
            message = f"{param}: {message[len(field) + 2 :]}"
        raise errors.ValidationError(message, details={**exc.details, "field": param}) from None
    if (body.get("n") or 1) > MAX_CHOICES:  # local_api/openai/choices.py
        raise _refuse(f"n must be at most {MAX_CHOICES}: each choice is a whole generation "
                      "here", "n")
    if body.get("best_of") not in (None, 1):
        raise _refuse("best_of must be 1", "best_of")


def ignored(body: dict[str, Any]) -> list[str]:
    """Fields present (and not null) that this surface accepts but does not act on."""
    names = sorted(k for k, v in body.items() if k not in USED and v is not None)
    # They are echoed in a response header: only plain names, and not too many.
    return [k for k in names if _PARAM_NAME.fullmatch(k)][:16]


def _text(content: Any, index: int) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for j, part in enumerate(content):
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise _refuse(
                "Only text content parts are supported", f"messages[{index}].content[{j}]"
            )
        parts.append(part["text"])
    return "".join(parts)


def messages_of(body: dict[str, Any]) -> tuple[Message, ...]:
    """The chat messages as bridge Messages (developer is the newer name of system)."""
    out = []
    for index, raw in enumerate(body["messages"]):
        if raw.get("function_call"):
            raise _refuse("function_call is not supported: use tool_calls",
                          f"messages[{index}].function_call")  # fmt: skip
        calls = formats.history_text(raw, index)
        if raw.get("content") is None and raw["role"] != "assistant":
            raise _refuse("content is required", f"messages[{index}].content")
        role = "system" if raw["role"] == "developer" else raw["role"]
        out.append(Message(role, calls or _text(raw.get("content"), index)))
    return tuple(out)


def prompt_of(body: dict[str, Any]) -> str:
    """The one prompt of a completions request."""
    for name in ("echo", "suffix"):
        if body.get(name):
            raise _refuse(f"{name} is not supported", name)
    prompt = body["prompt"]
    if isinstance(prompt, list):
        if len(prompt) != 1:
            raise _refuse("Only one prompt per request is supported", "prompt")
        prompt = prompt[0]
    return str(prompt)


def build_request(
    body: dict[str, Any],
    model: str,
    limit: int,
    *,
    messages: tuple[Message, ...] = (),
    prompt: str = "",
) -> GenerateRequest:
    """The GenerateRequest for a validated body (chat when messages are given)."""
    name = "max_completion_tokens" if body.get("max_completion_tokens") else "max_tokens"
    max_tokens = body.get(name) or min(DEFAULT_MAX_TOKENS, limit)
    stop = body.get("stop") or ()
    temperature = body.get("temperature")
    return GenerateRequest(
        model=model,
        prompt=prompt,
        messages=messages,
        max_tokens=max_tokens,
        temperature=float(DEFAULT_TEMPERATURE if temperature is None else temperature),
        top_p=float(1.0 if body.get("top_p") is None else body["top_p"]),
        top_k=int(body.get("top_k") or 0),
        stop=(stop,) if isinstance(stop, str) else tuple(stop),
        seed=body.get("seed"),
        frequency_penalty=float(body.get("frequency_penalty") or 0.0),
        presence_penalty=float(body.get("presence_penalty") or 0.0),
        truncate=bool(body.get("truncate")),
        chat=bool(messages),
        defaulted=params.omitted(body, {"repetition_penalty": None}),  # not OpenAI's
        logprobs=logprobs.requested(body, chat=bool(messages)),
    )


def names(body: dict[str, Any]) -> dict[str, str]:
    """How this body names the request's fields (for the ``param`` of an error)."""
    out = {"messages": "messages", "prompt": "prompt"}
    if body.get("max_completion_tokens"):
        out["max_tokens"] = "max_completion_tokens"
    return out


def new_id(chat: bool) -> str:
    return ("chatcmpl-" if chat else "cmpl-") + secrets.token_hex(12)


@cache  # read once: importlib.metadata parses the package's METADATA (was 90% of a chunk's CPU)
def fingerprint() -> str:
    """OpenAI's ``system_fingerprint``: the serving configuration, the same on every chunk of a
    stream and every answer of this version (which backend answered is in ``backend``)."""
    try:
        release = version("compute-bridge")
    except PackageNotFoundError:
        release = "dev"
    return "fp_bridge_" + release.replace(".", "_")


def usage(answer: dict[str, Any]) -> dict[str, int]:
    return {
        k: int(answer["usage"][k]) for k in ("prompt_tokens", "completion_tokens", "total_tokens")
    }


def completion(answer: dict[str, Any], *, chat: bool, id_: str, created: int) -> dict[str, Any]:
    """A non-streamed chat.completion or text_completion object (plus our `backend`)."""
    choice: dict[str, Any] = {
        "index": 0,
        "logprobs": None,
        "finish_reason": answer["finish_reason"],
    }
    if chat:
        choice["message"] = {"role": "assistant", "content": answer["text"], "refusal": None}
        if answer.get("tool_calls"):
            choice["message"].update(tool_calls=answer["tool_calls"],
                                     content=answer["text"] or None)
    else:
        choice["text"] = answer["text"]
    return {
        "id": id_,
        "object": "chat.completion" if chat else "text_completion",
        "created": created,
        "model": answer["model"],
        "system_fingerprint": fingerprint(),
        "choices": [choice],
        "usage": usage(answer),
        "backend": answer["backend"],
        **({"prompt_truncated": True} if answer.get("prompt_truncated") else {}),
    }


def chunk(
    id_: str,
    created: int,
    model: str,
    *,
    chat: bool,
    text: str | None = None,
    role: bool = False,
    finish: str | None = None,
) -> dict[str, Any]:
    """One streamed chunk: the role delta, a content delta, or the closing finish_reason."""
    choice: dict[str, Any] = {"index": 0, "logprobs": None, "finish_reason": finish}
    if chat:
        delta: dict[str, Any] = {"role": "assistant", "content": ""} if role else {}
        if text is not None:
            delta["content"] = text
        choice["delta"] = delta
    else:
        choice["text"] = text or ""
    return {
        "id": id_,
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": created,
        "model": model,
        "system_fingerprint": fingerprint(),
        "choices": [choice],
    }


def now() -> int:
    return int(time.time())
