"""Structured outputs on the real default model served by llama.cpp, through the real app and
the real ``openai`` client: the answer matches the schema because decoding was constrained."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Literal

import httpx
import ollama
import openai
import pytest
from flask import Flask
from pydantic import BaseModel

from bridge.backends.local import LocalBackend
from bridge.config import DEFAULT_MODEL_ID
from bridge.router import Router
from local_api import create_app, shutdown
from tests.support.app import LiveServer
from tests.support.clients import api_key, openai_client

pytestmark = pytest.mark.model


class City(BaseModel):
    name: str
    country: str
    population_millions: int
    kind: Literal["capital", "other"]


@pytest.fixture
def app(app_config: dict[str, Any], llama_backend: LocalBackend) -> Iterator[Flask]:
    application = create_app(app_config, router=Router(llama_backend), local=llama_backend,
                             store=llama_backend.store)  # fmt: skip
    yield application
    shutdown(application)


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
