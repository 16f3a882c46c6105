"""bridge.structured's schema check (the engines' constraining: tests/bridge/test_constraints.py
and tests/end_to_end/test_structured_*.py)."""

from __future__ import annotations

import json

import pytest

from bridge.errors import ValidationError
from bridge.structured import ANY_OBJECT, parsed, schema_text


def test_a_schema_travels_as_compact_sorted_json() -> None:
    text = schema_text({"type": "object", "properties": {"b": {}, "a": {}}}, "format")
    assert text == '{"properties":{"a":{},"b":{}},"type":"object"}'
    assert parsed(text)["type"] == "object" and parsed("") == {}
    assert json.loads(ANY_OBJECT) == {"type": "object"}


@pytest.mark.parametrize("schema", [[1], "json", {"type": "objekt"}, {"required": "a"},
                                    {"properties": {"a": {"minimum": "x"}}}])  # fmt: skip
def test_an_invalid_schema_names_the_field(schema: object) -> None:
    with pytest.raises(ValidationError) as caught:
        schema_text(schema, "format")
    assert caught.value.details["field"] == "format" and "format" in caught.value.message

