"""The NDJSON wire format: events and requests survive the trip, bad input is refused."""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any

import pytest

from bridge.errors import BackendUnavailable, BridgeError, ModelNotFound, ValidationError
from bridge.types import BackendSwitched, Done, GenerateRequest, Message, Token
from bridge.wire import (
    decode_event,
    decode_events,
    encode_error,
    encode_event,
    request_from_dict,
    request_to_dict,
)

EVENTS = [
    Token("Hel"),
    Token("lo, wörld ✓\n"),
    BackendSwitched("colab-t4", "local", "ReadTimeout: timed out"),
    Done(12, 3, "length", backend="colab-t4", truncated_prompt=True),
]


@pytest.mark.parametrize("event", EVENTS)
def test_each_event_is_one_json_line_and_decodes_back(event: Any) -> None:
    line = encode_event(event)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert "type" in json.loads(line)
    assert decode_event(line) == event


def test_a_stream_decodes_in_order_skips_blank_lines_and_stops_at_done() -> None:
    lines = [encode_event(e) for e in EVENTS] + [b"", encode_event(Token("after done"))]
    lines.insert(1, b"\n")
    assert list(decode_events(lines)) == EVENTS


def test_the_wire_names_are_the_documented_ones() -> None:
    assert json.loads(encode_event(EVENTS[2])) == {
        "type": "backend_switched",
        "from": "colab-t4",
        "to": "local",
        "reason": "ReadTimeout: timed out",
    }
    assert json.loads(encode_event(Done(1, 2, backend="local")))["finish_reason"] == "stop"


def test_an_error_line_raises_the_class_its_code_names() -> None:
    line = encode_error(ModelNotFound("no such model", details={"model_id": "x"}))
    stream = decode_events([encode_event(Token("a")), line])
    assert next(stream) == Token("a")
    with pytest.raises(ModelNotFound) as caught:
        next(stream)
    assert caught.value.message == "no such model"
    assert caught.value.details == {"model_id": "x"}


def test_an_unknown_error_code_is_still_a_bridge_error() -> None:
    line = b'{"type": "error", "error": {"code": "SOMETHING_NEW", "message": "m"}}'
    with pytest.raises(BridgeError, match="m"):
        decode_event(line)


@pytest.mark.parametrize(
    "line",
    [b"not json", b"[1, 2]", b'{"type": "telepathy"}', b'{"type": "token", "text": 5}',
     b'{"type": "done", "prompt_tokens": -1}', b'{"type": "error", "error": "x"}'],
)  # fmt: skip
def test_malformed_lines_mean_the_other_side_is_not_a_worker(line: bytes) -> None:
    with pytest.raises(BackendUnavailable, match="malformed event stream"):
        decode_event(line)


def test_a_request_survives_the_round_trip_through_json() -> None:
    request = GenerateRequest(
        model="smollm2",
        messages=(Message("system", "Be brief."), Message("user", "Capital of France?")),
        max_tokens=7,
        temperature=0.0,
        top_p=0.9,
        top_k=40,
        stop=("\n\n",),
        seed=3,
        prefill="The capital",
        chat=True,
        json_schema='{"properties":{"a":{"type":"integer"}},"type":"object"}',
        num_ctx=8192,
    )
    data = json.loads(json.dumps(request_to_dict(request)))
    assert set(data) == {f.name for f in fields(GenerateRequest)}
    assert request_from_dict(data) == request


def test_defaults_fill_in_missing_fields() -> None:
    assert request_from_dict({"model": "m", "prompt": "hi"}) == GenerateRequest("m", "hi")


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"model": ""}, "model"),
        ({"model": 3}, "model"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": "5"}, "max_tokens"),
        ({"max_tokens": True}, "max_tokens"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"top_k": -1}, "top_k"),
        ({"stop": "\n"}, "stop"),
        ({"stop": [1]}, "stop"),
        ({"seed": 1.5}, "seed"),
        ({"chat": "yes"}, "chat"),
        ({"messages": [{"role": "user"}]}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"prefill": None}, "prefill"),
        ({"prompt": ""}, "prompt"),
        ({"json_schema": "[1]"}, "json_schema"),
        ({"json_schema": "{not json"}, "json_schema"),
        ({"json_schema": {"type": "object"}}, "json_schema"),
    ],
)
def test_bad_fields_are_refused_with_the_field_named(patch: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        request_from_dict({"model": "m", "prompt": "hi", **patch})
    assert caught.value.details["field"] == field
    assert caught.value.status == 400


def test_unknown_fields_and_non_objects_are_refused() -> None:
    with pytest.raises(ValidationError, match="unknown field.*temprature"):
        request_from_dict({"model": "m", "prompt": "hi", "temprature": 1})
    with pytest.raises(ValidationError):
        request_from_dict(["model", "m"])
