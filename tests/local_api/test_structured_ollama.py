"""/ollama/api/chat's tools and tool_calls through the real ``ollama`` client, a FakeBackend
standing for the model (it answers what the constrained model would)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import ollama
import pytest
from flask import Flask

from bridge.config import DEFAULT_MODEL_ID
from tests.support.app import LiveServer
from tests.support.fakes import LocalFake

M = DEFAULT_MODEL_ID
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object",
                                          "properties": {"city": {"type": "string"}}}}}
CALL = '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]}'


@pytest.fixture
def app(scripted_app: Flask) -> Flask:
    return scripted_app


@pytest.fixture
def client(live_server: LiveServer, bearer: dict[str, str]) -> Iterator[ollama.Client]:
    with ollama.Client(host=f"{live_server.url}/ollama", headers=bearer, timeout=30) as c:
        yield c


def test_a_tool_call_comes_back_in_ollamas_shape(client: ollama.Client, fake: LocalFake) -> None:
    fake.queue(CALL, CALL, "Sunny in Oslo.")
    answer = client.chat(model=M, tools=[WEATHER],
                         messages=[{"role": "user", "content": "Weather in Oslo?"}])
    call = answer.message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather" and call.function.arguments == {"city": "Oslo"}
    assert answer.done_reason == "stop" and not answer.message.content
    streamed = [part for part in client.chat(
        model=M, tools=[WEATHER], stream=True,
        messages=[{"role": "user", "content": "Weather in Oslo?"}]) if part.message.tool_calls]
    assert [p.message.tool_calls[0].function.arguments for p in streamed] == [  # type: ignore[index]
        {"city": "Oslo"}]
    history = [{"role": "user", "content": "Weather in Oslo?"},
               {"role": "assistant", "content": "", "tool_calls": [
                   {"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]},
               {"role": "tool", "content": "Sunny", "tool_name": "get_weather"}]
    client.chat(model=M, tools=[WEATHER], messages=history)
    sent = fake.history[-1]
    assert json.loads(sent.messages[2].content)["tool_calls"][0]["arguments"] == {"city": "Oslo"}
    assert (sent.messages[3].role, sent.messages[3].content) == ("tool", "Sunny")
    assert "get_weather" in sent.messages[0].content and sent.json_schema


@pytest.mark.parametrize(("body", "field"), [
    ({"tools": [{"type": "function", "function": {"description": "x"}}]}, "tools[0]"),
    ({"tools": [{"type": "retrieval"}]}, "tools[0].type"),
    ({"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f",
                                                                        "arguments": "x"}}]}]},
     "messages[0].tool_calls[0]"),
])  # fmt: skip
def test_bad_tools_are_ollamas_400(http: httpx.Client, bearer: dict[str, str], fake: LocalFake,
                                   body: dict[str, Any], field: str) -> None:  # fmt: skip
    body = {"model": M, "messages": [{"role": "user", "content": "hi"}], **body}
    refused = http.post("/ollama/api/chat", headers=bearer, json=body)
    assert refused.status_code == 400 and field in refused.json()["error"], refused.text
    assert fake.history == []
