"""Request bodies: parsed once, checked against a JSON Schema that also feeds the OpenAPI doc."""

from __future__ import annotations

import json
from typing import Any

from flask import request
from jsonschema import Draft202012Validator
from jsonschema import ValidationError as SchemaError

from bridge.errors import UnsupportedMediaType, ValidationError
from bridge.params import refuse_surrogates

_validators: dict[int, Draft202012Validator] = {}


def obj(properties: dict[str, Any], required: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    """A closed JSON object schema (unknown fields are refused)."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
        **extra,
    }


def json_body(schema: dict[str, Any] | None = None, *, optional: bool = False) -> dict[str, Any]:
    """The request's JSON object, validated; ValidationError names the offending field."""
    raw = request.get_data(cache=True)
    if raw.strip():
        require_json_type()
    if not raw.strip():
        if optional:
            data: Any = {}
        else:
            raise ValidationError("Request body is empty; a JSON object is required")
    else:
        data = parse_json(raw)
    if not isinstance(data, dict):
        raise ValidationError("Request body must be a JSON object")
    if schema is not None:
        check(data, schema)
    return data


# A foreign page may send text/plain, form and multipart bodies without a CORS preflight
# (Fetch standard, "CORS-safelisted request-header"): a JSON route refuses them. Ollama's own
# docs post with `curl -d`, whose default type is form-urlencoded, so /ollama keeps that one.
_CURL_DEFAULT = "application/x-www-form-urlencoded"


def require_json_type() -> None:
    """415 unless the body is declared JSON (``application/json``, ``*/*+json``) or undeclared."""
    declared = request.mimetype
    if not declared or declared == "application/json" or declared.endswith("+json"):
        return
    if declared == _CURL_DEFAULT and request.path.startswith("/ollama/"):
        return
    raise UnsupportedMediaType(
        f"Content-Type {declared[:80]!r} is not JSON: send 'Content-Type: application/json'",
        details={"content_type": declared[:80]},
    )


MAX_DEPTH = 32


def parse_json(raw: bytes | str) -> Any:
    """Decode JSON text; malformed, non-UTF-8 or over-deep documents are a ValidationError."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise ValidationError("Request body is not valid JSON") from None
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ValidationError(f"JSON is nested deeper than {MAX_DEPTH} levels")
        children = (
            node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        )
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    refuse_surrogates(data)
    return data


def check(data: Any, schema: dict[str, Any]) -> None:
    """Validate ``data`` against ``schema``; the first error becomes a ValidationError."""
    validator = _validators.get(id(schema))
    if validator is None:
        validator = _validators[id(schema)] = Draft202012Validator(schema)
    error: SchemaError | None = next(iter(validator.iter_errors(data)), None)
    if error is None:
        return
    field = ".".join(str(p) for p in error.absolute_path)
    message = describe(error)
    raise ValidationError(
        f"{field}: {message}" if field else message,
        details={"field": field or None, "rule": str(error.validator)},
    )


_LIMITS = {
    "minLength": "must be at least {} characters long",
    "maxLength": "must be at most {} characters long",
    "minimum": "must be at least {}",
    "maximum": "must be at most {}",
    "exclusiveMinimum": "must be greater than {}",
    "exclusiveMaximum": "must be less than {}",
    "minItems": "must have at least {} items",
    "maxItems": "must have at most {} items",
    "type": "must be of type {}",
}


def describe(error: SchemaError) -> str:
    """What is wrong, in words that never repeat the value sent (it may be a secret) nor the
    schema's internals (a regex): the rule and its bound, or the field's description."""
    rule, bound = str(error.validator), error.validator_value
    message: str = error.message
    if rule == "additionalProperties":
        return f"Unknown field(s): {message.split('(')[-1].rstrip(')')}"
    if rule == "required":
        return message.replace("'", "")[:200]  # names the missing field only
    if rule == "type" and isinstance(bound, list):
        bound = " or ".join(str(b) for b in bound)
    if rule in _LIMITS:
        return _LIMITS[rule].format(bound)
    if rule == "enum" and isinstance(bound, list):
        return "must be one of: " + ", ".join(str(b) for b in bound)[:200]
    hint = error.schema.get("description") if isinstance(error.schema, dict) else None
    if rule in ("pattern", "format"):
        return f"is not {hint}" if hint else "is not in the expected form"
    return f"is not valid ({rule})"


def int_arg(name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter within [low, high]."""
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError(f"{name} must be an integer", details={"field": name}) from None
    if not low <= value <= high:
        raise ValidationError(f"{name} must be between {low} and {high}", details={"field": name})
    return value
