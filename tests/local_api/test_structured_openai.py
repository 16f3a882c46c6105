"""/v1's response_format, decoded into the request's constraint (a FakeBackend records what
reached the backend) and refused in OpenAI's error shape when bad, by the real ``openai``."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from flask import Flask

from bridge.config import DEFAULT_MODEL_ID
from bridge.models.store import ModelStore
from bridge.router import Router
from tests.support.app import LiveServer
from tests.support.clients import api_key, openai_client
from tests.support.fakes import FakeBackend, LocalFake

M = DEFAULT_MODEL_ID
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
def fake() -> LocalFake:
    return LocalFake()


@pytest.fixture
def app(make_app: Callable[..., Flask], app_config: dict[str, Any], fake: LocalFake,
        tmp_path: Path) -> Flask:  # fmt: skip
    return make_app(app_config, router=Router(fake), local=fake,
                    store=ModelStore(tmp_path / "models"))  # fmt: skip


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
