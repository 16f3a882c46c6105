"""Generation parameters: their ranges and the one check that the API (every surface) and
the worker apply to a ``GenerateRequest``, so that no two places can disagree.

Ranges follow OpenAI's API reference where it sets one (temperature 0-2, top_p in (0, 1],
penalties -2..2, seed a 32-bit value here because both engines take one); ``top_k`` up to
1000 and up to 4 stop strings of at most 64 characters are this service's own limits.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

from bridge.errors import ValidationError
from bridge.types import GenerateRequest

SEED_MAX = 2**32 - 1
STOP_MAX, STOP_LENGTH = 4, 64
TOP_K_MAX = 1000
TEXT_MAX = 200_000  # characters in one prompt or message
NUM_CTX_MAX = 1 << 20  # tokens of context a request may ask for (a model's own caps it lower)
# What a model's catalog entry (FT's ``parameters``) may set for requests that omit it.
DEFAULTABLE = ("temperature", "top_p", "top_k", "repetition_penalty", "frequency_penalty",
               "presence_penalty")

# JSON Schema of FT/AQ's ``parameters`` object (it also feeds the OpenAPI document).
_stop = {"type": "string", "minLength": 1, "maxLength": STOP_LENGTH}
SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "top_k": {"type": "integer", "minimum": 0, "maximum": TOP_K_MAX},
        "max_tokens": {"type": "integer", "minimum": 1},
        "stop": {"anyOf": [_stop, {"type": "array", "items": _stop, "maxItems": STOP_MAX}]},
        "seed": {"type": "integer", "minimum": 0, "maximum": SEED_MAX},
        "repetition_penalty": {"type": "number", "exclusiveMinimum": 0, "maximum": 2},
        "frequency_penalty": {"type": "number", "minimum": -2, "maximum": 2},
        "presence_penalty": {"type": "number", "minimum": -2, "maximum": 2},
        "truncate": {"type": "boolean"},
    },
}


def lone_surrogate(value: Any, path: str = "") -> str | None:
    """The JSON path of the first string holding an unpaired UTF-16 surrogate, or None.

    ``json.loads('"\\ud83d"')`` gives such a string; it cannot be encoded as UTF-8, so no
    tokenizer, database or log can take it.
    """
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        node, where = stack.pop()
        if isinstance(node, str):
            if any("\ud800" <= ch <= "\udfff" for ch in node):
                return where or "(body)"
        elif isinstance(node, dict):
            for key, child in node.items():
                if isinstance(key, str) and lone_surrogate(key) is not None:
                    return where or "(body)"
                stack.append((child, f"{where}.{key}" if where else str(key)))
        elif isinstance(node, list):
            stack.extend((child, f"{where}[{i}]") for i, child in enumerate(node))
    return None


def refuse_surrogates(value: Any, path: str = "") -> None:
    """ValidationError naming the field when ``value`` holds an unpaired surrogate."""
    where = lone_surrogate(value, path)
    if where is not None:
        raise ValidationError(
            f"{where}: the text holds an unpaired UTF-16 surrogate (not valid Unicode); "
            "send whole characters",
            details={"field": where, "rule": "unicode"},
        )


def _problems(request: GenerateRequest) -> Iterator[tuple[str, str]]:
    r = request
    if not r.model.strip():
        yield "model", "is required"
    if not r.prompt and not r.messages:
        yield "prompt", "a prompt or messages are required"
    if r.max_tokens < 1:
        yield "max_tokens", "must be at least 1"
    if not 0 <= r.temperature <= 2:
        yield "temperature", "must be between 0 and 2"
    if not 0 < r.top_p <= 1:
        yield "top_p", "must be greater than 0 and at most 1"
    if not 0 <= r.top_k <= TOP_K_MAX:
        yield "top_k", f"must be between 0 and {TOP_K_MAX}"
    if r.seed is not None and not 0 <= r.seed <= SEED_MAX:
        yield "seed", f"must be between 0 and {SEED_MAX}"
    if len(r.stop) > STOP_MAX or any(not 0 < len(s) <= STOP_LENGTH for s in r.stop):
        yield "stop", f"at most {STOP_MAX} strings of 1 to {STOP_LENGTH} characters"
    if not 0 < r.repetition_penalty <= 2:
        yield "repetition_penalty", "must be greater than 0 and at most 2"
    for name in ("frequency_penalty", "presence_penalty"):
        if not -2 <= getattr(r, name) <= 2:
            yield name, "must be between -2 and 2"
    if r.num_ctx is not None and not 1 <= r.num_ctx <= NUM_CTX_MAX:
        yield "num_ctx", f"must be between 1 and {NUM_CTX_MAX}"
    if len(r.prompt) > TEXT_MAX or any(len(m.content) > TEXT_MAX for m in r.messages):
        yield "prompt", f"longer than {TEXT_MAX} characters"


def check(request: GenerateRequest, names: Mapping[str, str] | None = None) -> GenerateRequest:
    """``request`` when every parameter is in range; else ValidationError naming the field
    as the caller's dialect spells it (``names`` maps ``top_p`` to ``parameters.top_p``)."""
    for field, problem in _problems(request):
        shown = (names or {}).get(field, field)
        raise ValidationError(f"{shown}: {problem}", details={"field": shown})
    texts = {"model": request.model, "prompt": request.prompt, "prefill": request.prefill,
             "messages": [m.content for m in request.messages], "stop": list(request.stop)}
    where = lone_surrogate(texts)
    if where is not None:
        field = where.split("[")[0]
        refuse_surrogates(texts[field], (names or {}).get(field, field))
    return request


def omitted(given: Mapping[str, Any],
            spelled: Mapping[str, str | None] | None = None) -> tuple[str, ...]:
    """The DEFAULTABLE parameters absent (or null) in a request's ``given`` fields, which the
    model's catalog defaults fill; ``spelled`` maps a name to the dialect's key
    (``{"repetition_penalty": "repeat_penalty"}``; a name mapped to None has no key there)."""
    keys = {name: (spelled or {}).get(name, name) for name in DEFAULTABLE}
    return tuple(n for n, key in keys.items() if key is None or given.get(key) is None)


def with_defaults(request: GenerateRequest, defaults: Mapping[str, Any]) -> GenerateRequest:
    """``request`` with the model's ``defaults`` for what the client left out: a value the
    client set wins. A default out of range (a hand-edited manifest) is skipped."""
    filled = request
    for name in request.defaulted:
        value = defaults.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        candidate = replace(filled, **{name: type(getattr(request, name))(value)})
        if not any(field == name for field, _ in _problems(candidate)):
            filled = candidate
    return replace(filled, defaulted=())
