"""Ollama's wire shapes for /ollama/api: request schemas, GenerateRequest building, answers.

Read from Ollama's API (``api/types.go``) and its Python client (``ollama._types``):
``options`` carry the sampling parameters (``num_predict`` is the token budget,
``repeat_penalty`` the multiplicative penalty; ``num_ctx`` sets the context: a model loaded
with less is reloaded with it, as Ollama reloads its runner; the other load-time options are
accepted and ignored), ``keep_alive`` is honoured (keep_alive.py), and
``truncate: true`` opts into dropping the oldest turns when the prompt does not fit (off by
default here, where Ollama turns it on: this service never cuts a prompt unasked).
Model names may carry Ollama's default tag (``smollm2-135m-instruct:latest``).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from bridge import errors, params
from bridge.models.store import MANIFEST, ModelInfo
from bridge.structured import ANY_OBJECT, schema_text
from bridge.types import GenerateRequest, Message
from local_api.ollama import hf, tools

DEFAULT_MAX_TOKENS = 1024  # Ollama's num_predict -1 (no bound) would fill the context
DEFAULT_TEMPERATURE = 0.7  # the service's default, as on the other surfaces
ROLES = ("system", "user", "assistant", "tool")

_number = {"type": "number"}
_integer = {"type": "integer"}
OPTIONS: dict[str, Any] = {  # known options typed; others (load-time ones) ignored
    "type": ["object", "null"],
    "properties": {
        "temperature": _number, "top_p": _number, "top_k": _integer, "seed": _integer,
        "num_predict": _integer, "repeat_penalty": _number, "frequency_penalty": _number,
        "presence_penalty": _number, "num_ctx": _integer,
        "stop": {"type": "array", "items": {"type": "string"}},
    },
}
_model = {"type": "string", "minLength": 1, "maxLength": 128}
_common: dict[str, Any] = {
    "model": _model,
    "stream": {"type": ["boolean", "null"]},
    "options": OPTIONS,
    "keep_alive": {"type": ["number", "string", "null"]},
    "truncate": {"type": ["boolean", "null"]},
    "format": {"type": ["string", "object", "null"]},
    "think": {"type": ["boolean", "string", "null"]},
    "logprobs": {"type": ["boolean", "null"]},  # Ollama 0.12: per-token log-probabilities
    "top_logprobs": {"type": ["integer", "null"], "minimum": 0, "maximum": 20},
}
_message = {
    "type": "object",
    "required": ["role"],
    "properties": {"role": {"type": "string"}, "content": {"type": ["string", "null"]},
                   "images": {"type": ["array", "null"]},
                   "tool_calls": {"type": ["array", "null"]}},
}
CHAT: dict[str, Any] = {
    "type": "object", "required": ["model"],
    "properties": {**_common, "messages": {"type": ["array", "null"], "maxItems": 1000,
                                           "items": _message},
                   "tools": {"type": ["array", "null"]}},
}
GENERATE: dict[str, Any] = {
    "type": "object", "required": ["model"],
    "properties": {**_common, "prompt": {"type": ["string", "null"]},
                   "system": {"type": ["string", "null"]}, "raw": {"type": ["boolean", "null"]},
                   "suffix": {"type": ["string", "null"]}, "template": {"type": ["string", "null"]},
                   "context": {"type": ["array", "null"]}, "images": {"type": ["array", "null"]}},
}
_names = {"model": _model, "name": _model}  # /show and /pull take either (name: the older)
NAMED: dict[str, Any] = {"type": "object", "properties": _names}
PULL: dict[str, Any] = {"type": "object", "properties": {
    **_names, "stream": {"type": ["boolean", "null"]}, "insecure": {"type": ["boolean", "null"]}}}
EMBED: dict[str, Any] = {"type": "object", "required": ["model"],
         "properties": {"model": _model, "input": {"type": ["string", "array"]},
                        "prompt": {"type": "string"}, "truncate": {"type": "boolean"},
                        "dimensions": {"type": "integer"}}}
# The catalog's parameter names in Ollama's (Modelfile PARAMETER names); others are not shown.
OLLAMA_NAMES = {"repetition_penalty": "repeat_penalty", "context": "num_ctx", "n_ctx": "num_ctx",
                "max_tokens": "num_predict",
                **{k: k for k in ("temperature", "top_k", "top_p", "stop", "seed", "num_ctx",
                                  "frequency_penalty", "presence_penalty")}}
# How this dialect names the request's fields, for error messages.
NAMES = {"max_tokens": "options.num_predict", "repetition_penalty": "options.repeat_penalty",
         **{k: f"options.{k}" for k in ("temperature", "top_p", "top_k", "seed", "stop",
                                         "frequency_penalty", "presence_penalty", "num_ctx")},
         "messages": "messages", "prompt": "prompt"}


def _refuse(message: str, field: str) -> errors.ValidationError:
    return errors.ValidationError(message, details={"field": field})


def model_id(name: str) -> str:
    """The service's id for an Ollama name: the default tag ``:latest`` is dropped, an
    ``hf.co/owner/repo:quant`` name is its catalog id (hf.py)."""
    return hf.model_id(name)


def name_of(body: dict[str, Any]) -> str:
    """The model named by /show, /pull (``model``, or the older ``name``)."""
    name = body.get("model") or body.get("name")
    if not name:
        raise _refuse("model is required", "model")
    return str(name)


def refuse_unsupported(body: dict[str, Any]) -> None:
    """400s for what Ollama would refuse a model without the capability (same messages)."""
    model = body["model"]
    if body.get("suffix"):
        raise _refuse(f'"{model}" does not support insert', "suffix")
    if body.get("images"):
        raise _refuse(f'"{model}" does not support images', "images")
    if body.get("template") or body.get("context"):
        field = "template" if body.get("template") else "context"
        raise _refuse(f"{field} is not supported: the model's own template is used", field)


def messages_of(body: dict[str, Any]) -> tuple[Message, ...]:
    out = []
    for index, raw in enumerate(body.get("messages") or []):
        if raw["role"] not in ROLES:
            raise _refuse(f"messages[{index}].role: must be one of {', '.join(ROLES)}",
                          f"messages[{index}].role")
        if raw.get("images"):
            raise _refuse(f"messages[{index}].images are not supported",
                          f"messages[{index}].images")  # fmt: skip
        calls = tools.history_text(raw, index)
        out.append(Message(raw["role"], calls or raw.get("content") or ""))
    return tuple(out)


def format_of(body: dict[str, Any]) -> str:
    """Ollama's ``format``: "json" (any JSON object) or a JSON schema, as the request's schema
    text; "" for none. Other values get Ollama's own message (server/routes.go)."""
    fmt = body.get("format")
    if fmt in (None, ""):
        return ""
    if fmt == "json":
        return ANY_OBJECT
    if isinstance(fmt, dict):
        return schema_text(fmt, "format")
    shown = str(fmt)[:80]
    raise _refuse(f'invalid format: "{shown}"; expected "json" or a valid JSON schema', "format")


def generate_input(body: dict[str, Any]) -> tuple[tuple[Message, ...], str]:
    """/generate's prompt as chat turns (the model's template applies) or, raw, as text."""
    prompt, system = body.get("prompt") or "", body.get("system") or ""
    if body.get("raw"):
        if system:
            raise _refuse("raw mode does not support template, system, or context", "raw")
        return (), prompt
    turns = (Message("system", system),) if system else ()
    return (*turns, Message("user", prompt)), ""


def build_request(body: dict[str, Any], model: str, limit: int, *,
                  messages: tuple[Message, ...] = (), prompt: str = "") -> GenerateRequest:
    """The GenerateRequest for a validated body; ranges are checked by the pipeline."""
    o = body.get("options") or {}
    budget = o.get("num_predict")  # Ollama's -1 (no bound) and -2 (fill the context)
    stop = o.get("stop") or ()
    temperature = o.get("temperature")
    return GenerateRequest(
        model=model,
        prompt=prompt,
        messages=messages,
        max_tokens=min(DEFAULT_MAX_TOKENS, limit) if budget is None or budget < 0 else budget,
        temperature=float(DEFAULT_TEMPERATURE if temperature is None else temperature),
        top_p=float(1.0 if o.get("top_p") is None else o["top_p"]),
        top_k=int(o.get("top_k") or 0),
        stop=tuple(stop),
        seed=o.get("seed"),
        repetition_penalty=float(1.0 if o.get("repeat_penalty") is None else o["repeat_penalty"]),
        frequency_penalty=float(o.get("frequency_penalty") or 0.0),
        presence_penalty=float(o.get("presence_penalty") or 0.0),
        truncate=bool(body.get("truncate")),
        chat=bool(messages),
        defaulted=params.omitted(o, {"repetition_penalty": "repeat_penalty"}),
        json_schema=format_of(body),
        logprobs=int(body.get("top_logprobs") or 0) if body.get("logprobs") else None,
        num_ctx=o.get("num_ctx"),
    )


def now() -> str:
    """Ollama's ``created_at``: RFC 3339 in UTC."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def chunk(model: str, text: str, *, chat: bool) -> dict[str, Any]:
    """One streamed piece: a message fragment (/chat) or a response fragment (/generate)."""
    out: dict[str, Any] = {"model": model, "created_at": now()}
    if chat:
        out["message"] = {"role": "assistant", "content": text}
    else:
        out["response"] = text
    out["done"] = False
    return out


def final(answer: dict[str, Any], model: str, *, chat: bool, text: str = "") -> dict[str, Any]:
    """The closing object (``done: true``) with Ollama's counters; ``text`` is the whole
    answer for a non-streamed one, empty on the last line of a stream. Durations are in
    nanoseconds; the service does not time prompt evaluation apart, so ``eval_duration``
    is the whole generation's."""
    total = int(answer["elapsed"] * 1e9)
    reason = "stop" if answer["finish_reason"] == "tool_calls" else answer["finish_reason"]
    out = {**chunk(model, text, chat=chat), "done": True, "done_reason": reason,
           "total_duration": total, "load_duration": 0,
           "prompt_eval_count": answer["usage"]["prompt_tokens"],
           "eval_count": answer["usage"]["completion_tokens"], "eval_duration": total,
           "backend": answer["backend"]}
    if answer.get("prompt_truncated"):
        out["prompt_truncated"] = True
    return out


def loaded(model: str, reason: str, *, chat: bool) -> dict[str, Any]:
    """The answer to an empty prompt: the model is loaded (or unloaded), nothing generated."""
    return {**chunk(model, "", chat=chat), "done": True, "done_reason": reason}


def details(info: ModelInfo) -> dict[str, Any]:
    family = (info.family or "").lower()
    return {"parent_model": "", "format": info.format,
            "family": family, "families": [family] if family else None,
            "parameter_size": info.size,
            "quantization_level": info.gguf_type or ",".join(info.quantization)}


def _modified(info: ModelInfo) -> str:
    manifest = info.path / MANIFEST if info.path else None
    stamp = manifest.stat().st_mtime if manifest and manifest.exists() else 0
    return datetime.fromtimestamp(stamp, UTC).isoformat().replace("+00:00", "Z")


def _digest(info: ModelInfo) -> str:
    manifest = info.path / MANIFEST if info.path else None
    data = manifest.read_bytes() if manifest and manifest.exists() else info.id.encode()
    return hashlib.sha256(data).hexdigest()


def tag(info: ModelInfo) -> dict[str, Any]:
    """One model of /tags."""
    name = hf.ollama_name(info.id)
    return {"name": name, "model": name, "modified_at": _modified(info),
            "size": info.bytes, "digest": _digest(info), "details": details(info)}


def remote_tag(model: str, backend: str | None) -> dict[str, Any]:
    """A model only an attached worker serves (no files here)."""
    return {"name": model, "model": model, "modified_at": _modified(ModelInfo(model, "", "", "")),
            "size": 0, "digest": hashlib.sha256(model.encode()).hexdigest(),
            "details": {"parent_model": "", "format": "", "family": "", "families": None,
                        "parameter_size": "", "quantization_level": ""},
            "backend": backend}


def parameters(defaults: dict[str, Any]) -> str:
    """The catalog defaults as Ollama's /show ``parameters``: one ``name value`` line each
    in Ollama's names (server/routes.go GetModelInfo: ``%-30s %#v``, strings quoted, one
    ``stop`` line per sequence)."""
    lines = []
    for key, value in sorted(defaults.items(), key=lambda kv: OLLAMA_NAMES.get(kv[0], "")):
        name = OLLAMA_NAMES.get(key)
        if name is None:
            continue
        for one in value if isinstance(value, list | tuple) else [value]:
            lines.append(f"{name:<30} {json.dumps(one) if isinstance(one, str) else one}")
    return "\n".join(lines)


def show(info: ModelInfo, capabilities: list[str]) -> dict[str, Any]:
    """/show: details, the model's default parameters (Ollama's ``name value`` lines) and its
    ``capabilities`` (``completion``, ``tools``, ``embedding``, as Ollama's server lists them)."""
    family = (info.family or "").lower()
    params = parameters(info.parameters)
    modelfile = f"# Modelfile generated by compute-bridge\nFROM {hf.ollama_name(info.id)}\n"
    modelfile += "".join(f"PARAMETER {line}\n" for line in params.splitlines())
    return {"modelfile": modelfile,
            "parameters": params, "template": "", "details": details(info),
            "model_info": {"general.architecture": family, "general.basename": info.name},
            "capabilities": capabilities,
            "modified_at": _modified(info)}


def running(info: ModelInfo, expires: float) -> dict[str, Any]:
    """One model of /ps (loaded here), with when keep_alive unloads it if left idle."""
    until = datetime.fromtimestamp(expires, UTC).isoformat().replace("+00:00", "Z")
    return {**tag(info), "expires_at": until}

