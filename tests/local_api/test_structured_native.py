"""Structured outputs and tools on the native surfaces (FT /generate, AQ /chat/completion, /ws
chat.stream), the Python SDK and Ollama's /show capabilities, over a real server; a
LocalFake records what reached the backend and answers what a constrained model would."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import ollama
import pytest
import websocket
from flask import Flask
from pydantic import BaseModel

from bridge import Client
from bridge.config import DEFAULT_MODEL_ID, EMBEDDING_MODEL_ID
from bridge.errors import ValidationError
from tests.support.app import LiveServer
from tests.support.fakes import LocalFake

M = DEFAULT_MODEL_ID
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather of a city now",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}  # fmt: skip
CALL = '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]}'


class City(BaseModel):
    name: str
    country: str


def connect(server: LiveServer, token: str) -> websocket.WebSocket:
    url = server.url.replace("http://", "ws://") + "/ws"
    return websocket.create_connection(url, header=[f"Authorization: Bearer {token}"], timeout=10)


def until(ws: websocket.WebSocket, name: str, limit: int = 50) -> list[dict[str, Any]]:
    """Frames up to the first called ``name``."""
    seen = []
    for _ in range(limit):
        seen.append(json.loads(ws.recv()))
        if seen[-1]["event"] == name:
            return seen
    raise AssertionError(f"no {name} frame in {limit}")


@pytest.fixture
def app(scripted_app: Flask) -> Flask:
    return scripted_app


@pytest.fixture
def sdk(live_server: LiveServer, access_token: str) -> Iterator[Client]:
    with Client(live_server.url, access_token=access_token) as client:
        yield client


def test_response_format_reaches_the_backend_on_ft_and_aq(
    http: httpx.Client, bearer: dict[str, str], fake: LocalFake
) -> None:
    fake.queue('{"name": "Paris", "country": "France"}', '{"a": 1}', "plain")
    schema = City.model_json_schema()
    ft = http.post("/api/generate", headers=bearer, json={
        "prompt": "Paris?", "parameters": {"response_format": schema, "max_tokens": 50}})
    assert ft.status_code == 200, ft.text
    assert City.model_validate_json(ft.json()["response"]).name == "Paris"
    aq = http.post("/api/v1/chat/completion", headers=bearer, json={
        "prompt": "x", "model_id": M, "parameters": {"response_format": "json"}})
    assert aq.json()["completion"] == '{"a": 1}'
    http.post("/api/v1/chat/completion", headers=bearer, json={
        "prompt": "x", "parameters": {"response_format": "text"}})
    seen = [r.json_schema for r in fake.history]
    assert json.loads(seen[0]) == schema and json.loads(seen[1]) == {"type": "object"}
    assert seen[2] == ""


def test_a_tool_loop_over_a_conversation(http: httpx.Client, bearer: dict[str, str],
                                         fake: LocalFake) -> None:  # fmt: skip
    fake.queue(CALL, "It is sunny in Oslo.")
    first = http.post("/api/v1/chat/completion", headers=bearer, json={
        "prompt": "Weather in Oslo?", "parameters": {
            "tools": [WEATHER], "tool_choice": "get_weather", "temperature": 0}}).json()
    assert first["finish_reason"] == "tool_calls" and first["completion"] == ""
    call = first["tool_calls"][0]
    assert (call["name"], call["arguments"]) == ("get_weather", {"city": "Oslo"})
    assert call["id"].startswith("call_")
    schema = json.loads(fake.history[-1].json_schema)  # the named function, forced by grammar
    assert schema["properties"]["tool_calls"]["items"]["properties"]["name"] == {
        "const": "get_weather"}
    second = http.post("/api/generate", headers=bearer, json={
        "conversation_id": first["conversation_id"], "parameters": {
            "tools": [WEATHER["function"]], "tool_choice": "none"},  # the flat shape too
        "tool_results": [{"tool_call_id": call["id"], "content": "Sunny, 21 C"}]}).json()
    assert second["response"] == "It is sunny in Oslo." and "tool_calls" not in second
    sent = fake.history[-1]
    assert [m.role for m in sent.messages] == ["user", "assistant", "tool"]
    assert json.loads(sent.messages[1].content)["tool_calls"][0]["arguments"] == {"city": "Oslo"}
    assert sent.messages[2].content == "Sunny, 21 C" and sent.json_schema == ""
    stored = http.get(f"/api/conversations/{first['conversation_id']}", headers=bearer).json()
    assert [m["role"] for m in stored["conversation"]["messages"]] == [
        "user", "assistant", "tool", "assistant"]


def test_streamed_tool_calls_are_lines_of_their_own(http: httpx.Client, bearer: dict[str, str],
                                                    fake: LocalFake) -> None:  # fmt: skip
    fake.queue(CALL)
    lines = [json.loads(line) for line in http.post("/api/generate", headers=bearer, json={
        "prompt": "Weather?", "stream": True,
        "parameters": {"tools": [WEATHER], "tool_choice": "required"}}).text.splitlines()]
    assert lines[0] == {"tool_call": {"id": lines[0]["tool_call"]["id"], "name": "get_weather",
                                      "arguments": {"city": "Oslo"}}, "is_final": False}
    assert lines[-1]["is_final"] and lines[-1]["finish_reason"] == "tool_calls"
    assert lines[-1]["tool_calls"] == [lines[0]["tool_call"]]


@pytest.mark.parametrize(("extra", "field"), [
    ({"parameters": {"response_format": {"type": "objekt"}}}, "parameters.response_format"),
    ({"parameters": {"response_format": "xml"}}, "parameters.response_format"),
    ({"parameters": {"tools": [{"type": "function", "function": {"description": "x"}}]}},
     "parameters.tools[0].function.name"),
    ({"parameters": {"tools": [{"description": "no name"}]}},
     "parameters.tools[0].function.name"),
    ({"parameters": {"tools": [WEATHER], "tool_choice": "get_time"}}, "parameters.tool_choice"),
    ({"parameters": {"tools": [{"name": "f", "parameters": {"type": 3}}]}},
     "parameters.tools[0].function.parameters"),
    ({"parameters": {"tools": [WEATHER], "response_format": "json"}},
     "parameters.response_format"),
    ({"prompt": None, "tool_results": [{"tool_call_id": "c", "content": "x"}]},
     "conversation_id"),
    ({"prompt": None}, "prompt"),
])  # fmt: skip
def test_bad_input_is_a_400_naming_the_field(http: httpx.Client, bearer: dict[str, str],
                                             fake: LocalFake, extra: dict[str, Any],
                                             field: str) -> None:  # fmt: skip
    body = {k: v for k, v in {"prompt": "hi", **extra}.items() if v is not None}
    for path in ("/api/generate", "/api/v1/chat/completion"):
        refused = http.post(path, headers=bearer, json=body)
        error = refused.json()["error"]
        assert refused.status_code == 400, refused.text
        assert error["code"] == "VALIDATION_ERROR" and error["details"]["field"] == field, error
    assert fake.history == []


def test_ws_chat_stream_takes_tools_and_a_schema(live_server: LiveServer, access_token: str,
                                                 fake: LocalFake) -> None:  # fmt: skip
    fake.queue(CALL, '{"name": "Oslo", "country": "Norway"}')
    ws = connect(live_server, access_token)
    try:
        ws.send(json.dumps({"event": "chat.stream", "data": {
            "prompt": "Weather?", "parameters": {"tools": [WEATHER], "tool_choice": "required"}}}))
        frames = [f["data"] for f in until(ws, "chat.stream", 50)]
        while not frames[-1]["is_final"]:
            frames += [f["data"] for f in until(ws, "chat.stream", 50)]
        assert frames[0]["tool_call"]["name"] == "get_weather" and not frames[0]["is_final"]
        assert frames[-1]["finish_reason"] == "tool_calls"
        assert frames[-1]["tool_calls"][0]["arguments"] == {"city": "Oslo"}
        ws.send(json.dumps({"event": "chat.stream", "data": {
            "prompt": "Oslo?", "parameters": {"response_format": City.model_json_schema()}}}))
        final = [f for f in until(ws, "chat.stream", 50)]
        while not final[-1]["data"]["is_final"]:
            final += until(ws, "chat.stream", 50)
        assert City.model_validate_json(final[-1]["data"]["completion"]).country == "Norway"
        ws.send(json.dumps({"event": "chat.stream", "data": {
            "prompt": "x", "parameters": {"tools": [WEATHER], "tool_choice": "nope"}}}))
        error = until(ws, "error")[-1]["data"]["error"]
        assert error["details"]["field"] == "parameters.tool_choice", error
    finally:
        ws.close()


def test_the_sdk_parses_models_and_runs_a_tool_loop(sdk: Client, fake: LocalFake) -> None:
    fake.queue('{"name": "Paris", "country": "France"}', '{"ok": true}', CALL, "Sunny.", CALL)
    city = sdk.chat.completion("Paris?", response_format=City, temperature=0).parsed
    assert city == City(name="Paris", country="France")
    flag = sdk.generate("Ok?", response_format={"type": "object"})
    assert flag.parsed == {"ok": True} and flag.text == '{"ok": true}'
    first = sdk.chat.completion("Weather in Oslo?", tools=[WEATHER], tool_choice="get_weather")
    assert first.finish_reason == "tool_calls"
    call = first.tool_calls[0]
    assert (call.name, call.arguments) == ("get_weather", {"city": "Oslo"})
    second = sdk.chat.completion(conversation_id=first.conversation_id, tools=[WEATHER],
                                 tool_choice="none", tool_results=[
                                     {"tool_call_id": call.id, "content": "Sunny"}])  # fmt: skip
    assert second.completion == "Sunny." and not second.tool_calls
    assert fake.history[-1].messages[-1].role == "tool"

    class GetWeather(BaseModel):
        """The weather of a city now."""

        city: str

    with sdk.chat.stream("Weather?", tools=[GetWeather], tool_choice="required") as stream:
        assert list(stream) == []
    assert [c.name for c in stream.tool_calls] == ["get_weather"]  # the queued answer's name
    sent = json.loads(fake.history[-1].json_schema)
    assert sent["properties"]["tool_calls"]["items"]["properties"]["name"] == {
        "const": "GetWeather"}
    assert stream.final.tool_calls[0].arguments == {"city": "Oslo"}
    with pytest.raises(ValidationError) as refused:
        sdk.chat.completion("x", tools=[WEATHER], tool_choice="nope")
    assert refused.value.details["field"] == "parameters.tool_choice"


def test_show_lists_tools_only_for_models_that_have_them(
    live_server: LiveServer, bearer: dict[str, str], fake: LocalFake
) -> None:
    with ollama.Client(host=f"{live_server.url}/ollama", headers=bearer) as client:
        assert client.show(M).capabilities == ["completion", "tools"]  # a GGUF on llama.cpp
        assert client.show(EMBEDDING_MODEL_ID).capabilities == ["embedding"]
        fake.engine = "transformers"  # a service that serves it on transformers only
        assert client.show(M).capabilities == ["completion", "tools"]  # llguidance constrains
        fake.engine_of = lambda _model: "fake"  # type: ignore[attr-defined]  # one that does not
        assert client.show(M).capabilities == ["completion"]
        with pytest.raises(ollama.ResponseError) as refused:
            client.chat(model=M, tools=[WEATHER], messages=[{"role": "user", "content": "x"}])
    assert refused.value.status_code == 400
    assert refused.value.error == f"{M} does not support tools"
    assert fake.history == []
