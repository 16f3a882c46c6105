"""OpenAI's Responses API and Anthropic's Messages API on the real default model served by
llama.cpp, through the real app and the official ``openai`` and ``anthropic`` clients with
only a base URL and a key: text, streams, a tool loop each, a JSON-schema format, token
counting and an error."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
from flask import Flask

from bridge.config import DEFAULT_MODEL_ID
from tests.support.app import LiveServer
from tests.support.clients import api_key, openai_client

pytestmark = pytest.mark.model
M = DEFAULT_MODEL_ID
GREEDY = {"temperature": 0}
PARIS = [{"role": "user", "content": "What is the capital of France?"}]
CITY = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


@pytest.fixture
def app(llama_app: Flask) -> Flask:
    return llama_app


@pytest.fixture
def key(http: httpx.Client) -> str:
    return api_key(http)


@pytest.fixture
def claude(live_server: LiveServer, key: str) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=live_server.url, api_key=key, max_retries=0,
                             timeout=300) as client:  # fmt: skip
        yield client


@pytest.fixture
def oai(live_server: LiveServer, key: str) -> Iterator[openai.OpenAI]:
    with openai_client(live_server.url, key, timeout=300) as client:
        yield client


def test_anthropic_messages_create_stream_and_count(
    claude: anthropic.Anthropic, http: httpx.Client, key: str
) -> None:
    done = claude.messages.create(model=M, max_tokens=30, messages=PARIS,  # type: ignore[arg-type]
                                  extra_body=GREEDY)
    assert done.content[0].type == "text" and "Paris" in done.content[0].text, done
    assert done.stop_reason in ("end_turn", "max_tokens") and done.usage.input_tokens > 5
    with claude.messages.stream(model=M, max_tokens=30, messages=PARIS,  # type: ignore[arg-type]
                                extra_body=GREEDY) as stream:  # fmt: skip
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert streamed == final.content[0].text == done.content[0].text  # type: ignore[union-attr]
    assert final.usage.output_tokens == done.usage.output_tokens
    counted = claude.messages.count_tokens(model=M, system="Be brief.", messages=PARIS)  # type: ignore[arg-type]
    tokenized = http.post("/api/tokenize", headers={"Authorization": f"Bearer {key}"}, json={
        "model": M, "messages": [{"role": "system", "content": "Be brief."}, *PARIS]}).json()
    assert counted.input_tokens == tokenized["count"] > 5
    with pytest.raises(anthropic.BadRequestError) as bad:
        claude.messages.create(model=M, max_tokens=10, messages=[  # type: ignore[arg-type]
            {"role": "system", "content": "no such role"}])
    assert bad.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]


def test_anthropic_tool_loop(claude: anthropic.Anthropic) -> None:
    tools: Any = [{"name": "get_weather", "description": "The weather in a city",
                   "input_schema": CITY}]  # fmt: skip
    ask: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = claude.messages.create(model=M, max_tokens=60, tools=tools, messages=ask,
                                   tool_choice={"type": "any"}, extra_body=GREEDY)  # fmt: skip
    use = first.content[-1]
    assert first.stop_reason == "tool_use" and use.type == "tool_use", first
    assert use.name == "get_weather" and isinstance(use.input["city"], str)
    second = claude.messages.create(
        model=M, max_tokens=40, tools=tools, tool_choice={"type": "none"}, extra_body=GREEDY,
        messages=[*ask, {"role": "assistant", "content": first.content},
                  {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                                "content": "Sunny, 21 C"}]}])  # fmt: skip
    assert second.content[0].type == "text" and second.content[0].text.strip(), second


def test_responses_create_and_stream(oai: openai.OpenAI) -> None:
    done = oai.responses.create(model=M, input="What is the capital of France?",
                                max_output_tokens=30, temperature=0)  # fmt: skip
    assert "Paris" in done.output_text and done.usage is not None, done
    events = list(oai.responses.create(model=M, input="What is the capital of France?",
                                       max_output_tokens=30, temperature=0, stream=True))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == done.output_text == events[-1].response.output_text  # type: ignore[union-attr]
    with pytest.raises(openai.BadRequestError) as stateful:
        oai.responses.create(model=M, input="hi", previous_response_id=done.id)
    assert stateful.value.body["param"] == "previous_response_id"  # type: ignore[index]


def test_responses_tool_loop_and_json_schema(oai: openai.OpenAI) -> None:
    tools: Any = [{"type": "function", "name": "get_weather", "parameters": CITY,
                   "description": "The weather in a city"}]  # fmt: skip
    ask: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = oai.responses.create(model=M, input=ask, tools=tools, tool_choice="required",
                                 temperature=0, max_output_tokens=100)  # fmt: skip
    call = first.output[0]
    assert call.type == "function_call" and call.name == "get_weather", (first.status,
                                                                         first.output)
    assert isinstance(json.loads(call.arguments)["city"], str)
    second = oai.responses.create(
        model=M, tools=tools, tool_choice="none", temperature=0, max_output_tokens=40,
        input=[*ask, call, {"type": "function_call_output", "call_id": call.call_id,
                            "output": "Sunny, 21 C"}])  # fmt: skip
    assert second.output_text.strip(), second
    shaped = oai.responses.create(
        model=M, input="Name a city in France as JSON.", temperature=0, max_output_tokens=60,
        text={"format": {"type": "json_schema", "name": "city", "schema": CITY,
                         "strict": True}})  # fmt: skip
    assert isinstance(json.loads(shaped.output_text)["city"], str), shaped.output_text
