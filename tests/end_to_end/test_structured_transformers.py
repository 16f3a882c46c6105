"""Structured outputs and tools on the transformers engine (the GPU worker's engine), through
the real app and the real ``openai`` client, on the real default model: decoding is
constrained by llguidance (bridge/backends/engines/constraints.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Literal

import httpx
import jsonschema
import openai
import pytest
from flask import Flask
from pydantic import BaseModel, Field

from bridge.backends.local import LocalBackend
from bridge.config import DEFAULT_MODEL_ID
from bridge.router import Router
from local_api import create_app, shutdown
from tests.support.app import LiveServer
from tests.support.clients import api_key, openai_client

pytestmark = pytest.mark.model


class Verdict(BaseModel):
    answer: Literal["yes", "no"]
    confidence: int = Field(ge=0, le=9)


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather of a city now",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
                   "required": ["city"], "additionalProperties": False}}}  # fmt: skip


@pytest.fixture
def app(app_config: dict[str, Any], local_backend: LocalBackend) -> Iterator[Flask]:
    assert local_backend.engine_of(DEFAULT_MODEL_ID) == "transformers"
    application = create_app(app_config, router=Router(local_backend), local=local_backend,
                             store=local_backend.store)  # fmt: skip
    yield application
    shutdown(application)


@pytest.fixture
def oai(live_server: LiveServer, http: httpx.Client) -> Iterator[openai.OpenAI]:
    with openai_client(live_server.url, api_key(http), timeout=600) as client:
        yield client


def test_parse_and_a_forced_tool_on_transformers(oai: openai.OpenAI) -> None:
    done = oai.chat.completions.parse(
        model=DEFAULT_MODEL_ID, response_format=Verdict, temperature=0, max_tokens=40,
        messages=[{"role": "user", "content": "Is Paris in France? Answer as JSON."}])
    verdict = done.choices[0].message.parsed
    assert isinstance(verdict, Verdict), done.choices[0].message.content
    assert done.choices[0].finish_reason == "stop"
    called = oai.chat.completions.create(
        model=DEFAULT_MODEL_ID, tools=[WEATHER], tool_choice="required", temperature=0,  # type: ignore[list-item]
        max_tokens=60, messages=[{"role": "user", "content": "What is the weather in Paris?"}])
    choice = called.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    call = choice.message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    jsonschema.validate(json.loads(call.function.arguments),  # type: ignore[union-attr]
                        WEATHER["function"]["parameters"])  # type: ignore[index]


def test_cut_and_refused_schemas_on_transformers(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.LengthFinishReasonError):
        oai.chat.completions.parse(
            model=DEFAULT_MODEL_ID, response_format=Verdict, temperature=0, max_tokens=3,
            messages=[{"role": "user", "content": "Is Paris in France? Answer as JSON."}])
    with pytest.raises(openai.BadRequestError) as caught:
        oai.chat.completions.create(
            model=DEFAULT_MODEL_ID, max_tokens=10, messages=[{"role": "user", "content": "x"}],
            response_format={"type": "json_schema", "json_schema": {
                "name": "x", "schema": {"not": {"type": "string"}}}})  # fmt: skip
    body: Any = caught.value.body
    assert body["param"] == "response_format" and "not" in body["message"], body
