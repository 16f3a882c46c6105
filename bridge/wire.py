"""The NDJSON wire format shared by the worker, ``RemoteBackend`` and the API's streams.

One JSON object per line, tagged by ``type``:

    {"type": "token", "text": "Hel"}
    {"type": "backend_switched", "from": "colab-t4", "to": "local", "reason": "..."}
    {"type": "done", "prompt_tokens": 9, "completion_tokens": 3, "finish_reason": "stop",
     "backend": "local", "truncated_prompt": false}
    {"type": "error", "error": {"code": "MODEL_NOT_FOUND", "message": "...", "details": {}}}

An ``error`` line decodes into the ``BridgeError`` subclass its code names and is raised.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import fields
from typing import Any

from bridge import params
from bridge.errors import BackendUnavailable, BridgeError, ValidationError, error_for_code
from bridge.structured import parsed
from bridge.types import BackendSwitched, Done, Event, GenerateRequest, Message, Token

CONTENT_TYPE = "application/x-ndjson"
WORKER_SERVICE = "compute-bridge-worker"  # what a worker's /health says it is
FINISH_REASONS = frozenset({"stop", "length"})


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


def encode_event(event: Event) -> bytes:
    """One event as one NDJSON line (ending in a newline)."""
    if isinstance(event, Token):
        extra = {"logprobs": list(event.logprobs)} if event.logprobs else {}
        return _line({"type": "token", "text": event.text, **extra})
    if isinstance(event, BackendSwitched):
        return _line(
            {
                "type": "backend_switched",
                "from": event.from_backend,
                "to": event.to_backend,
                "reason": event.reason,
            }
        )
    if isinstance(event, Done):
        return _line(
            {
                "type": "done",
                "prompt_tokens": event.prompt_tokens,
                "completion_tokens": event.completion_tokens,
                "finish_reason": event.finish_reason,
                "backend": event.backend,
                "truncated_prompt": event.truncated_prompt,
                "engine": event.engine,
            }
        )
    raise TypeError(f"not an event: {event!r}")


def encode_error(error: BridgeError) -> bytes:
    """An error after the first byte of a stream: one more line, in the error envelope."""
    return _line({"type": "error", **error.to_dict()})


def _bad(message: str) -> BackendUnavailable:
    return BackendUnavailable(f"malformed event stream: {message}")


def _raise_error(obj: dict[str, Any]) -> BridgeError:
    body = obj.get("error")
    if not isinstance(body, dict):
        return _bad("error line without an error object")
    code = str(body.get("code", "INTERNAL_ERROR"))
    details = body.get("details")
    cls = error_for_code(code)
    return cls(
        str(body.get("message") or cls.default_message),
        details=details if isinstance(details, dict) else None,
    )


def _int(obj: dict[str, Any], key: str) -> int:
    value = obj.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _bad(f"{key} must be a non-negative integer")
    return value


def _str(obj: dict[str, Any], key: str, default: str | None = None) -> str:
    value = obj.get(key, default)
    if not isinstance(value, str):
        raise _bad(f"{key} must be a string")
    return value


def decode_event(line: bytes | str) -> Event:
    """One NDJSON line back into its event; an ``error`` line raises its BridgeError."""
    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad(f"not JSON: {line[:80]!r}") from exc
    if not isinstance(obj, dict):
        raise _bad("a line is not a JSON object")
    kind = obj.get("type")
    if kind == "token":
        probs = obj.get("logprobs") or []
        return Token(_str(obj, "text"), tuple(p for p in probs if isinstance(p, dict)))
    if kind == "done":
        finish = _str(obj, "finish_reason", "stop")
        return Done(
            prompt_tokens=_int(obj, "prompt_tokens"),
            completion_tokens=_int(obj, "completion_tokens"),
            finish_reason=finish if finish in FINISH_REASONS else "stop",
            backend=_str(obj, "backend", ""),
            truncated_prompt=bool(obj.get("truncated_prompt", False)),
            engine=_str(obj, "engine", ""),
        )
    if kind == "backend_switched":
        return BackendSwitched(_str(obj, "from"), _str(obj, "to"), _str(obj, "reason", ""))
    if kind == "error":
        raise _raise_error(obj)
    raise _bad(f"unknown event type {kind!r}")


def decode_events(lines: Iterable[bytes | str]) -> Iterator[Event]:
    """Events from NDJSON lines (blank lines skipped); stops after ``done``."""
    for line in lines:
        if not line.strip():
            continue
        event = decode_event(line)
        yield event
        if isinstance(event, Done):
            return


def request_to_dict(request: GenerateRequest) -> dict[str, Any]:
    """A ``GenerateRequest`` as a JSON-ready dict (the body of a worker's POST /generate)."""
    out: dict[str, Any] = {}
    for f in fields(request):
        value = getattr(request, f.name)
        if f.name == "messages":
            value = [{"role": m.role, "content": m.content} for m in value]
        elif f.name == "stop":
            value = list(value)
        out[f.name] = value
    return out


def _number(data: dict[str, Any], key: str, lo: float, hi: float, default: float) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise ValidationError(f"{key} must be a number in [{lo}, {hi}]", details={"field": key})
    return float(value)


def _integer(data: dict[str, Any], key: str, lo: int, default: int) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ValidationError(f"{key} must be an integer >= {lo}", details={"field": key})
    return value


def _text(data: dict[str, Any], key: str, default: str = "") -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        raise ValidationError(f"{key} must be a string", details={"field": key})
    return value


def _messages(value: Any) -> tuple[Message, ...]:
    if not isinstance(value, list):
        raise ValidationError("messages must be a list", details={"field": "messages"})
    out: list[Message] = []
    for item in value:
        if not (
            isinstance(item, dict)
            and isinstance(item.get("role"), str)
            and isinstance(item.get("content"), str)
        ):
            raise ValidationError(
                "each message needs a string role and content", details={"field": "messages"}
            )
        out.append(Message(item["role"], item["content"]))
    return tuple(out)


def _schema(data: dict[str, Any]) -> str:
    text = _text(data, "json_schema")
    try:
        parsed(text)
    except (ValueError, ValidationError):
        raise ValidationError("json_schema must be a JSON object's text",
                              details={"field": "json_schema"}) from None  # fmt: skip
    return text


def request_from_dict(data: Any) -> GenerateRequest:
    """Validate a dict from the wire into a ``GenerateRequest`` (ValidationError when bad)."""
    if not isinstance(data, dict):
        raise ValidationError("the request body must be a JSON object")
    unknown = set(data) - {f.name for f in fields(GenerateRequest)}
    if unknown:
        raise ValidationError(
            f"unknown field(s): {', '.join(sorted(unknown))}", details={"fields": sorted(unknown)}
        )
    model = _text(data, "model")
    if not model.strip():
        raise ValidationError("model is required", details={"field": "model"})
    stop = data.get("stop", [])
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise ValidationError("stop must be a list of strings", details={"field": "stop"})
    seed = data.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValidationError("seed must be an integer or null", details={"field": "seed"})
    chat = data.get("chat", True)
    if not isinstance(chat, bool):
        raise ValidationError("chat must be a boolean", details={"field": "chat"})
    truncate = data.get("truncate", False)
    if not isinstance(truncate, bool):
        raise ValidationError("truncate must be a boolean", details={"field": "truncate"})
    logprobs = data.get("logprobs")
    if logprobs is not None and (isinstance(logprobs, bool) or not isinstance(logprobs, int)
                                 or not 0 <= logprobs <= 20):  # fmt: skip
        raise ValidationError("logprobs must be null or 0-20", details={"field": "logprobs"})
    num_ctx = data.get("num_ctx")
    if num_ctx is not None and (isinstance(num_ctx, bool) or not isinstance(num_ctx, int)):
        raise ValidationError("num_ctx must be null or an integer", details={"field": "num_ctx"})
    request = GenerateRequest(
        model=model,
        prompt=_text(data, "prompt"),
        messages=_messages(data.get("messages", [])),
        max_tokens=_integer(data, "max_tokens", 1, 256),
        temperature=_number(data, "temperature", 0.0, 2.0, 0.7),
        top_p=_number(data, "top_p", 0.0, 1.0, 1.0),
        top_k=_integer(data, "top_k", 0, 0),
        stop=tuple(stop),
        seed=seed,
        repetition_penalty=_number(data, "repetition_penalty", 0.0, 2.0, 1.0),
        frequency_penalty=_number(data, "frequency_penalty", -2.0, 2.0, 0.0),
        presence_penalty=_number(data, "presence_penalty", -2.0, 2.0, 0.0),
        truncate=truncate,
        prefill=_text(data, "prefill"),
        chat=chat,
        json_schema=_schema(data),
        logprobs=logprobs,
        num_ctx=num_ctx,
    )
    return params.check(request)  # the same check as the API's, so the two cannot drift
