"""OpenAI's ``response_format`` decoded into the request's JSON-schema constraint.

``{"type": "text"}`` (or none): free text; ``{"type": "json_object"}``: any JSON object;
``{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}``: an answer that
matches ``schema`` (what ``client.chat.completions.parse(response_format=Model)`` sends).
Decoding is constrained by the engine's grammar, so ``strict`` true and false behave alike:
the answer always matches (unless ``max_tokens`` cuts it: ``finish_reason`` is then "length").
Shapes from OpenAI's API reference (Chat Completions, ``response_format``).
"""

from __future__ import annotations

import re
from typing import Any

from bridge.errors import ValidationError
from bridge.structured import ANY_OBJECT, schema_text

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # OpenAI's rule for json_schema.name
KINDS = ("text", "json_object", "json_schema")


def _refuse(message: str, param: str) -> ValidationError:
    return ValidationError(message, details={"field": param})


def schema_of(body: dict[str, Any]) -> str:
    """The constraint of a chat or completions body: "" (text), or a schema's JSON text.

    ValidationError naming the param (``response_format.json_schema.schema``) when bad."""
    fmt = body.get("response_format")
    if fmt is None:
        return ""
    kind = fmt.get("type")
    if kind not in KINDS:
        raise _refuse(f"response_format.type must be one of {', '.join(KINDS)}; got {kind!r}",
                      "response_format.type")  # fmt: skip
    if kind == "text":
        return ""
    if kind == "json_object":
        return ANY_OBJECT
    spec = fmt.get("json_schema")
    if not isinstance(spec, dict):
        raise _refuse("response_format.json_schema is required for type 'json_schema'",
                      "response_format.json_schema")  # fmt: skip
    name = spec.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise _refuse("response_format.json_schema.name must be 1-64 letters, digits, _ or -",
                      "response_format.json_schema.name")  # fmt: skip
    if not isinstance(spec.get("strict", False), bool | None):
        raise _refuse("response_format.json_schema.strict must be a boolean",
                      "response_format.json_schema.strict")  # fmt: skip
    schema = spec.get("schema")
    if schema is None or schema == {}:
        return ANY_OBJECT
    return schema_text(schema, "response_format.json_schema.schema")
