"""Structured outputs on the real default model served by llama.cpp, through the real app and
the real ``openai`` client: the answer matches the schema because decoding was constrained."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Literal

import httpx
import ollama
import openai
import pytest
from flask import Flask
from pydantic import BaseModel

from bridge.config import DEFAULT_MODEL_ID
from tests.support.app import LiveServer
from tests.support.clients import api_key, openai_client

pytestmark = pytest.mark.model


class City(BaseModel):
    name: str
    country: str
    population_millions: int
    kind: Literal["capital", "other"]


@pytest.fixture
def app(llama_app: Flask) -> Flask:
    return llama_app


@pytest.fixture
def oai(live_server: LiveServer, http: httpx.Client) -> Iterator[openai.OpenAI]:
    with openai_client(live_server.url, api_key(http), timeout=300) as client:
        yield client


def test_parse_gives_a_schema_valid_object(oai: openai.OpenAI) -> None:
    done = oai.chat.completions.parse(
        model=DEFAULT_MODEL_ID, response_format=City, temperature=0, max_tokens=120,
        messages=[{"role": "user", "content": "Describe Paris as JSON."}])  # fmt: skip
    city = done.choices[0].message.parsed
    assert isinstance(city, City), done.choices[0].message.content
    assert city.kind in ("capital", "other") and city.name
    assert done.choices[0].finish_reason == "stop"


def test_json_object_and_streamed_schema(oai: openai.OpenAI) -> None:
    answer = oai.chat.completions.create(
        model=DEFAULT_MODEL_ID, temperature=0, max_tokens=200,
        response_format={"type": "json_object"},
        messages=[{"role": "user", "content": "Give me a color as JSON."}])  # fmt: skip
    assert answer.choices[0].finish_reason == "stop", answer
    assert isinstance(json.loads(answer.choices[0].message.content or ""), dict)
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}},
              "required": ["ok"], "additionalProperties": False}  # fmt: skip
    parts = [c.choices[0].delta.content or "" for c in oai.chat.completions.create(
        model=DEFAULT_MODEL_ID, temperature=0, max_tokens=40, stream=True,
        response_format={"type": "json_schema",
                         "json_schema": {"name": "flag", "schema": schema, "strict": True}},
        messages=[{"role": "user", "content": "Is water wet?"}]) if c.choices]  # fmt: skip
    assert isinstance(json.loads("".join(parts))["ok"], bool)


def test_completions_take_response_format(oai: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "n", "schema": schema}}
    answer = oai.completions.create(
        model=DEFAULT_MODEL_ID, prompt="The number seven as JSON:", temperature=0, max_tokens=30,
        extra_body={"response_format": fmt})
    assert isinstance(json.loads(answer.choices[0].text)["n"], int)


def test_an_answer_cut_inside_the_json_says_length(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.LengthFinishReasonError):
        oai.chat.completions.parse(
            model=DEFAULT_MODEL_ID, response_format=City, temperature=0, max_tokens=5,
            messages=[{"role": "user", "content": "Describe Paris as JSON."}])  # fmt: skip


def test_a_keyword_llama_cpp_cannot_enforce_is_a_400(oai: openai.OpenAI) -> None:
    # llama.cpp's json-schema-to-grammar refuses a $ref it cannot resolve
    schema = {"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}
    with pytest.raises(openai.BadRequestError) as caught:
        oai.chat.completions.create(
            model=DEFAULT_MODEL_ID, max_tokens=10, messages=[{"role": "user", "content": "x"}],
            response_format={"type": "json_schema",
                             "json_schema": {"name": "x", "schema": schema}})  # fmt: skip
    assert caught.value.body["param"] == "response_format", caught.value.body  # type: ignore[index]


def test_ollama_format_json_and_schema(live_server: LiveServer, http: httpx.Client,
                                       bearer: dict[str, str]) -> None:  # fmt: skip
    with ollama.Client(host=f"{live_server.url}/ollama", headers=bearer, timeout=300) as client:
        answer = client.chat(model=DEFAULT_MODEL_ID, format=City.model_json_schema(),
                             options={"temperature": 0, "num_predict": 120},
                             messages=[{"role": "user", "content": "Describe Paris as JSON."}])
        assert answer.done_reason == "stop", answer
        assert City.model_validate_json(answer.message.content or "").name
        parts = [c.response for c in client.generate(
            model=DEFAULT_MODEL_ID, prompt="A color as JSON.", format="json", stream=True,
            options={"temperature": 0, "num_predict": 200})]  # fmt: skip
        assert isinstance(json.loads("".join(parts)), dict)
        refused = http.post("/ollama/api/chat", headers=bearer, json={  # the client refuses it
            "model": DEFAULT_MODEL_ID, "format": "xml", "messages": [{"role": "user"}]})
        assert refused.status_code == 400 and "invalid format" in refused.json()["error"]
        with pytest.raises(ollama.ResponseError) as caught:
            client.chat(model=DEFAULT_MODEL_ID, format={"type": "objekt"},
                        messages=[{"role": "user", "content": "x"}])  # fmt: skip
        assert caught.value.status_code == 400 and "format" in caught.value.error


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather of a city now",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"], "additionalProperties": False}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "The time in a timezone",
    "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}},
                   "required": ["timezone"]}}}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


def test_a_named_tool_choice_forces_that_function(oai: openai.OpenAI) -> None:
    done = oai.chat.completions.create(
        model=DEFAULT_MODEL_ID, messages=ASK, tools=[WEATHER, TIME], temperature=0,  # type: ignore[list-item]
        max_tokens=150, tool_choice={"type": "function", "function": {"name": "get_time"}})
    choice = done.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    call = choice.message.tool_calls[0]  # type: ignore[index]
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_time"  # type: ignore[union-attr]
    assert isinstance(json.loads(call.function.arguments)["timezone"], str)  # type: ignore[union-attr]
    assert choice.message.content is None


def test_required_streams_deltas_that_reassemble_and_a_second_turn_answers(
    oai: openai.OpenAI,
) -> None:
    calls: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in oai.chat.completions.create(
            model=DEFAULT_MODEL_ID, messages=ASK, tools=[WEATHER], tool_choice="required",  # type: ignore[list-item]
            temperature=0, max_tokens=150, stream=True, parallel_tool_calls=False):  # fmt: skip
        if not chunk.choices:
            continue
        finish = chunk.choices[0].finish_reason or finish
        for delta in chunk.choices[0].delta.tool_calls or []:
            entry = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            if delta.id:  # id and name come first, argument fragments after
                assert not entry["arguments"]
                entry["id"], entry["name"] = delta.id, delta.function.name or ""  # type: ignore[union-attr]
            entry["arguments"] += (delta.function.arguments or "") if delta.function else ""
    assert finish == "tool_calls" and list(calls) == [0], calls
    assert calls[0]["name"] == "get_weather" and calls[0]["id"]
    city = json.loads(calls[0]["arguments"])["city"]
    assert isinstance(city, str)
    history = [*ASK, {"role": "assistant", "content": None, "tool_calls": [{
        "id": calls[0]["id"], "type": "function",
        "function": {"name": "get_weather", "arguments": calls[0]["arguments"]}}]},
        {"role": "tool", "tool_call_id": calls[0]["id"], "content": "Sunny, 21 C"}]
    second = oai.chat.completions.create(
        model=DEFAULT_MODEL_ID, messages=history, tools=[WEATHER], tool_choice="none",  # type: ignore[arg-type,list-item]
        temperature=0, max_tokens=40)
    assert second.choices[0].message.content and not second.choices[0].message.tool_calls


def test_ollama_client_with_tools_gets_a_well_formed_answer(
    live_server: LiveServer, bearer: dict[str, str]
) -> None:
    """Ollama has no tool_choice: the model chooses (at temperature 0 this one answers in text,
    in the plain words a text answer has, never the JSON it was constrained to)."""
    with ollama.Client(host=f"{live_server.url}/ollama", headers=bearer, timeout=300) as client:
        answer = client.chat(model=DEFAULT_MODEL_ID, tools=[WEATHER], messages=ASK,
                             options={"temperature": 0, "num_predict": 150})
    assert answer.done_reason == "stop", answer
    calls = answer.message.tool_calls or []
    if calls:
        assert [c.function.name for c in calls] == ["get_weather"], answer
        assert isinstance(calls[0].function.arguments["city"], str)
    else:
        text = answer.message.content or ""
        assert text.strip() and not text.lstrip().startswith("{"), answer


def test_langchain_structured_output_and_bind_tools(live_server: LiveServer,
                                                    http: httpx.Client) -> None:  # fmt: skip
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(base_url=f"{live_server.url}/v1", api_key=api_key(http),  # type: ignore[arg-type]
                     model=DEFAULT_MODEL_ID, temperature=0, max_tokens=150, timeout=300,  # type: ignore[call-arg]
                     max_retries=0)  # fmt: skip
    city = llm.with_structured_output(City).invoke("Describe Paris as JSON.")
    assert isinstance(city, City) and city.name

    def get_weather(city: str) -> str:
        """The weather of a city now."""
        return "Sunny"

    called = llm.bind_tools([get_weather], tool_choice="get_weather").invoke(ASK[0]["content"])
    # parallel_tool_calls is on by default: the forced function, perhaps more than once
    assert {c["name"] for c in called.tool_calls} == {"get_weather"}, called  # type: ignore[attr-defined]
    assert isinstance(called.tool_calls[0]["args"]["city"], str)  # type: ignore[attr-defined]
