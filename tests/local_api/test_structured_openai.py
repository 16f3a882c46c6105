"""/v1's response_format, decoded into the request's constraint (a FakeBackend records what
reached the backend) and refused in OpenAI's error shape when bad, by the real ``openai``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from flask import Flask

from bridge.config import DEFAULT_MODEL_ID
from tests.support.app import LiveServer
from tests.support.clients import api_key, openai_client
from tests.support.fakes import FakeBackend

M = DEFAULT_MODEL_ID
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
def app(scripted_app: Flask) -> Flask:
    return scripted_app


@pytest.fixture
def oai(live_server: LiveServer, http: httpx.Client) -> Iterator[openai.OpenAI]:
    with openai_client(live_server.url, api_key(http)) as client:
        yield client


SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}


def test_each_response_format_reaches_the_backend_as_a_schema(
    oai: openai.OpenAI, fake: FakeBackend
) -> None:
    fake.queue('{"a": 1}', '{"a": 2}', '{"a": 3}', "plain")
    oai.chat.completions.create(model=M, messages=HI,  # type: ignore[call-overload]
                                response_format={"type": "json_object"})  # fmt: skip
    oai.chat.completions.create(model=M, messages=HI, response_format={  # type: ignore[call-overload]
        "type": "json_schema", "json_schema": {"name": "a", "schema": SCHEMA, "strict": True}})
    oai.completions.create(model=M, prompt="x", extra_body={"response_format": {
        "type": "json_schema", "json_schema": {"name": "a", "schema": SCHEMA}}})
    oai.chat.completions.create(model=M, messages=HI,  # type: ignore[call-overload]
                                response_format={"type": "text"})  # fmt: skip
    seen = [r.json_schema for r in fake.history]
    assert json.loads(seen[0]) == {"type": "object"}
    assert json.loads(seen[1]) == SCHEMA and json.loads(seen[2]) == SCHEMA
    assert seen[3] == ""


@pytest.mark.parametrize(("response_format", "param"), [
    ({"type": "xml"}, "response_format.type"),
    ({"type": "json_schema"}, "response_format.json_schema"),
    ({"type": "json_schema", "json_schema": {"schema": SCHEMA}},
     "response_format.json_schema.name"),
    ({"type": "json_schema", "json_schema": {"name": "a", "schema": [1]}},
     "response_format.json_schema.schema"),
    ({"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": 5}}},
     "response_format.json_schema.schema"),
    ({"type": "json_schema", "json_schema": {"name": "a", "schema": {"minLength": -1}}},
     "response_format.json_schema.schema"),
    ({"type": "json_schema", "json_schema": {"name": "a", "schema": SCHEMA, "strict": "yes"}},
     "response_format.json_schema.strict"),
])  # fmt: skip
def test_a_bad_response_format_is_a_400_naming_the_param(
    oai: openai.OpenAI, fake: FakeBackend, response_format: dict[str, Any], param: str,
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        oai.chat.completions.create(model=M, messages=HI,  # type: ignore[call-overload]
                                    response_format=response_format)  # fmt: skip
    body: dict[str, Any] = caught.value.body  # type: ignore[assignment]
    assert body["param"] == param and body["type"] == "invalid_request_error", body
    assert fake.history == []


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object",
                                          "properties": {"city": {"type": "string"}}}}}
CALLED = {"role": "assistant", "content": None, "tool_calls": [{
    "id": "call_1", "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]}


def test_a_tool_answer_becomes_tool_calls_and_the_history_reaches_the_model(
    oai: openai.OpenAI, fake: FakeBackend
) -> None:
    fake.queue('{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]}')
    done = oai.chat.completions.create(
        model=M, tools=[WEATHER], tool_choice="required",  # type: ignore[list-item]
        messages=[*HI, CALLED, {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"}])  # type: ignore[list-item]
    choice = done.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"city": "Oslo"}  # type: ignore[union-attr]
    sent = fake.history[-1]
    assert sent.messages[0].role == "system" and "get_weather" in sent.messages[0].content
    assert json.loads(sent.messages[2].content)["tool_calls"][0]["arguments"] == {"city": "Paris"}
    assert (sent.messages[3].role, sent.messages[3].content) == ("tool", "Sunny")
    schema = json.loads(sent.json_schema)  # required: a call is the only answer the grammar allows
    assert schema["properties"]["tool_calls"]["items"]["properties"]["name"] == {
        "const": "get_weather"}


def test_auto_lets_the_model_answer_in_text(oai: openai.OpenAI, fake: FakeBackend) -> None:
    fake.queue('{"response": "Hello there"}')
    done = oai.chat.completions.create(model=M, messages=HI, tools=[WEATHER])  # type: ignore[list-item]
    assert done.choices[0].message.content == "Hello there"
    assert done.choices[0].finish_reason == "stop" and not done.choices[0].message.tool_calls
    assert "anyOf" in json.loads(fake.history[-1].json_schema)


@pytest.mark.parametrize(("extra", "param"), [
    ({"tools": [{"type": "retrieval"}]}, "tools[0].type"),
    ({"tools": [{"type": "function", "function": {"description": "x"}}]},
     "tools[0].function.name"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": 3}}}]},
     "tools[0].function.parameters"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
     "tool_choice"),
    ({"tools": [WEATHER], "tool_choice": "always"}, "tool_choice"),
    ({"messages": [*HI, {"role": "tool", "content": "x"}]}, "messages[1].tool_call_id"),
    ({"messages": [*HI, {"role": "assistant", "tool_calls": [{"function": {"name": "f"}}]}]},
     "messages[1].tool_calls[0]"),
    ({"messages": [*HI, {"role": "assistant", "tool_calls": [
        {"function": {"name": "f", "arguments": "{oops"}}]}]},
     "messages[1].tool_calls[0].function.arguments"),
])  # fmt: skip
def test_bad_tools_are_a_400_naming_the_param(
    live_server: LiveServer, http: httpx.Client, fake: FakeBackend, extra: dict[str, Any],
    param: str,
) -> None:
    key = api_key(http, "bob")
    body = {"model": M, "messages": HI, **extra}
    refused = http.post("/v1/chat/completions", json=body,
                        headers={"Authorization": f"Bearer {key}"})  # fmt: skip
    error = refused.json()["error"]
    assert refused.status_code == 400 and error["param"] == param, error
    assert error["type"] == "invalid_request_error" and fake.history == []
