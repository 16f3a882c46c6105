"""bridge.structured's schema check, and the engine without constrained decoding refusing."""

from __future__ import annotations

import json
import queue

import pytest

from bridge.backends.engines.transformers import TransformersEngine
from bridge.errors import NotSupported, ValidationError
from bridge.structured import ANY_OBJECT, parsed, schema_text
from bridge.types import GenerateRequest


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


def test_the_transformers_engine_refuses_a_schema_before_touching_the_model() -> None:
    engine = TransformersEngine.__new__(TransformersEngine)  # no model: it must not need one
    request = GenerateRequest("m", "hi", json_schema=ANY_OBJECT)
    with pytest.raises(NotSupported, match="transformers engine") as caught:
        engine.submit(request, [1], queue.Queue())
    assert caught.value.status == 501 and caught.value.details["engine"] == "transformers"
