"""Structured outputs: the JSON schema an answer must match, checked once for every surface.

A request carries its constraint as ``GenerateRequest.json_schema``: the schema as compact JSON
text ("" for none), so it is hashable (cache keys), travels the worker wire unchanged, and every
engine reads the same thing. ``ANY_OBJECT`` is OpenAI's ``json_object`` and Ollama's
``format: "json"``: any JSON object.

The engines do the constraining: llama.cpp by its server's own ``json_schema`` field (converted
to a grammar by llama.cpp's json-schema-to-grammar), so a keyword it cannot turn into a grammar
is refused by it with a 400 that this service passes on as a ValidationError.
"""

from __future__ import annotations

import json
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from bridge.errors import ValidationError

ANY_OBJECT = '{"type":"object"}'
# The local engines that constrain decoding to a schema, so serve structured outputs and the
# tools done on it (local_api/generation/tools.py): llama.cpp by its server's grammar,
# transformers by llguidance (bridge/backends/engines/constraints.py).
CONSTRAINING_ENGINES = frozenset({"llama.cpp", "transformers"})
MAX_SCHEMA_CHARS = 100_000


def schema_text(schema: Any, field: str) -> str:
    """``schema`` (a dict from a request) as the compact JSON text a request carries.

    ValidationError naming ``field`` (the dialect's spelling) when it is not a JSON object, is
    not a valid JSON Schema (the 2020-12 meta-schema, which also accepts drafts 7 and 2019-09
    documents' common keywords) or is too large."""
    if not isinstance(schema, dict):
        raise ValidationError(f"{field} must be a JSON Schema object", details={"field": field})
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = ".".join(str(p) for p in exc.absolute_path)
        at = f" at {where}" if where else ""
        raise ValidationError(f"{field} is not a valid JSON Schema{at}: {exc.message}"[:500],
                              details={"field": field}) from None  # fmt: skip
    text = json.dumps(schema, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    if len(text) > MAX_SCHEMA_CHARS:
        raise ValidationError(f"{field} is longer than {MAX_SCHEMA_CHARS} characters",
                              details={"field": field})  # fmt: skip
    return text


def parsed(text: str) -> dict[str, Any]:
    """The schema a request carries, back as a dict (``{}`` for none)."""
    value = json.loads(text) if text else {}
    if not isinstance(value, dict):
        raise ValidationError("json_schema must be a JSON object", details={"field": "json_schema"})
    return value
