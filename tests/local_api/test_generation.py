"""Generation through the real app: both shapes, streaming, conversations, cache, bad input.

A FakeBackend (canned answers, history of requests) stands behind the one Router here, so
these tests check the API's own behaviour; test_generation_model.py runs the real model.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from bridge.config import DEFAULT_MODEL_ID
from bridge.models.store import ModelStore
from bridge.router import Router
from local_api import create_app, shutdown
from tests.support.app import Auth
from tests.support.fakes import FakeBackend, LocalFake


@pytest.fixture
def fake() -> LocalFake:
    return LocalFake()


@pytest.fixture
def app(app_config: dict[str, Any], fake: FakeBackend, tmp_path: Path) -> Iterator[Flask]:
    router = Router(fake)
    application = create_app(
        app_config, router=router, local=fake, store=ModelStore(tmp_path / "models")
    )
    yield application
    shutdown(application)


def lines(response: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in response.get_data(as_text=True).splitlines() if line]


def test_generate_ft_shape(client: FlaskClient, auth: Auth, fake: FakeBackend) -> None:
    fake.queue("Once upon a time there was a notebook.")
    response = client.post(
        "/api/generate",
        headers=auth.headers(),
        json={
            "model": DEFAULT_MODEL_ID,
            "prompt": "Write a story about...",
            "parameters": {"temperature": 0.7, "top_p": 0.9, "top_k": 40},
        },
    )
    assert response.status_code == 200
    body = response.get_json()
    assert body["response"] == "Once upon a time there was a notebook."
    assert body["usage"]["tokens"] == 8 and body["usage"]["time"].startswith("PT")
    assert body["backend"] == "local"
    assert body["metrics"]["response_time"].startswith("PT")
    assert body["conversation_id"].startswith("conv_")
    request = fake.history[-1]
    assert (request.temperature, request.top_p, request.top_k) == (0.7, 0.9, 40)
    assert request.messages[-1].content == "Write a story about..."


def test_chat_completion_aq_shape(client: FlaskClient, auth: Auth, fake: FakeBackend) -> None:
    fake.queue("I am fine, thank you.")
    response = client.post(
        "/api/v1/chat/completion",
        headers=auth.headers(),
        json={
            "prompt": "Hello, how are you?",
            "model_id": DEFAULT_MODEL_ID,
            "parameters": {"temperature": 0.5, "max_tokens": 32},
        },
    )
    body = response.get_json()
    assert body["completion"] == "I am fine, thank you."
    assert body["model_id"] == DEFAULT_MODEL_ID
    usage = body["usage"]
    assert usage["completion_tokens"] == 5
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert fake.history[-1].max_tokens == 32


def test_stream_is_ndjson_and_joins_to_the_answer(
    client: FlaskClient, auth: Auth, fake: FakeBackend
) -> None:
    fake.queue("one two three four")
    response = client.post(
        "/api/generate", headers=auth.headers(), json={"prompt": "count", "stream": True}
    )
    assert response.mimetype == "application/x-ndjson"
    events = lines(response)
    tokens = [e["token"] for e in events if not e["is_final"]]
    final = events[-1]
    assert final["is_final"] and "".join(tokens) == final["response"] == "one two three four"
    assert final["usage"]["tokens"] == 4 and final["backend"] == "local"
    conv = client.get(f"/api/conversations/{final['conversation_id']}", headers=auth.headers())
    assert conv.get_json()["conversation"]["messages"][-1]["content"] == "one two three four"


def test_error_after_first_token_is_a_stream_line(
    client: FlaskClient, auth: Auth, fake: FakeBackend
) -> None:
    fake.queue("alpha beta gamma delta")
    fake.die_after = 2
    response = client.post(
        "/api/generate", headers=auth.headers(), json={"prompt": "x", "stream": True}
    )
    assert response.status_code == 200
    events = lines(response)
    assert [e.get("token") for e in events[:2]] == ["alpha", " beta"]
    assert events[-1]["error"]["code"] == "BACKEND_UNAVAILABLE"


def test_error_before_first_token_is_a_real_status(
    client: FlaskClient, auth: Auth, fake: FakeBackend
) -> None:
    from bridge.errors import BackendUnavailable

    fake.fail = BackendUnavailable("no compute")
    response = client.post(
        "/api/generate", headers=auth.headers(), json={"prompt": "x", "stream": True}
    )
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "BACKEND_UNAVAILABLE"


def test_conversation_over_three_turns_feeds_history(
    client: FlaskClient, auth: Auth, fake: FakeBackend
) -> None:
    headers = auth.headers()
    fake.queue("Hi Ada.", "You are Ada.", "Goodbye Ada.")
    first = client.post(
        "/api/chat/completion",
        headers=headers,
        json={"prompt": "I am Ada.", "model_id": DEFAULT_MODEL_ID},
    ).get_json()
    conv_id = first["conversation_id"]
    for prompt in ("Who am I?", "Bye."):
        answer = client.post(
            "/api/chat/completion",
            headers=headers,
            json={"prompt": prompt, "conversation_id": conv_id},
        ).get_json()
        assert answer["conversation_id"] == conv_id
    roles = [(m.role, m.content) for m in fake.history[-1].messages]
    assert roles == [
        ("user", "I am Ada."),
        ("assistant", "Hi Ada."),
        ("user", "Who am I?"),
        ("assistant", "You are Ada."),
        ("user", "Bye."),
    ]
    conversation = client.get(f"/api/conversations/{conv_id}", headers=headers).get_json()
    messages = conversation["conversation"]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"] * 3
    assert all(m["timestamp"][-6] in "+-" for m in messages)
    listed = client.get("/api/v1/conversations", headers=headers).get_json()["conversations"]
    assert listed[0]["id"] == conv_id and listed[0]["message_count"] == 6


def test_conversations_are_private(client: FlaskClient, auth: Auth) -> None:
    alice, bob = auth.headers("alice"), auth.headers("bob")
    conv_id = client.post(
        "/api/generate", headers=alice, json={"prompt": "secret plans"}
    ).get_json()["conversation_id"]
    assert client.get(f"/api/conversations/{conv_id}", headers=bob).status_code == 404
    assert client.delete(f"/api/conversations/{conv_id}", headers=bob).status_code == 404
    hijack = client.post(
        "/api/generate", headers=bob, json={"prompt": "mine now", "conversation_id": conv_id}
    )
    assert hijack.status_code == 404
    assert client.get("/api/conversations", headers=bob).get_json()["conversations"] == []
    assert client.delete(f"/api/conversations/{conv_id}", headers=alice).status_code == 200
    assert client.get(f"/api/conversations/{conv_id}", headers=alice).status_code == 404


def test_deterministic_answers_are_cached(
    client: FlaskClient, auth: Auth, fake: FakeBackend
) -> None:
    headers = auth.headers()
    fake.queue("first answer", "second answer", "third answer")
    ask = {"prompt": "same question", "parameters": {"temperature": 0}}
    miss = client.post("/api/generate", headers=headers, json=ask)
    hit = client.post("/api/generate", headers=headers, json=ask)
    assert miss.headers["X-Cache"] == "MISS" and miss.get_json()["cache"]["status"] == "MISS"
    assert hit.headers["X-Cache"] == "HIT" and hit.get_json()["cache"]["status"] == "HIT"
    assert hit.get_json()["response"] == "first answer" and len(fake.history) == 1
    assert hit.get_json()["cache"]["ttl"].startswith("PT")
    bypass = client.post(
        "/api/generate", headers={**headers, "Cache-Control": "no-cache"}, json=ask
    )
    assert bypass.headers["X-Cache"] == "MISS" or bypass.headers["X-Cache"] == "BYPASS"
    assert bypass.get_json()["response"] == "second answer"
    sampled = client.post(
        "/api/generate",
        headers=headers,
        json={"prompt": "same question", "parameters": {"temperature": 0.9}},
    )
    assert sampled.headers["X-Cache"] == "BYPASS" and "cache" not in sampled.get_json()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": "x", "parameters": {"max_tokens": 10**9}}, "parameters.max_tokens"),
        ({"prompt": "x", "parameters": {"temperature": -1}}, "parameters.temperature"),
        ({"prompt": "x", "parameters": {"top_p": 0}}, "parameters.top_p"),
        ({"prompt": "x", "parameters": {"max_tokens": 0}}, "parameters.max_tokens"),
        ({"prompt": "x", "parameters": {"stop": ["a"] * 5}}, "parameters.stop"),
        ({"prompt": "x", "parameters": {"bogus": 1}}, "parameters"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": 42}, "prompt"),
        ({"prompt": "x", "stream": "yes"}, "stream"),
    ],
)
def test_bad_parameters(
    app: Flask,
    client: FlaskClient,
    auth: Auth,
    fake: FakeBackend,
    body: dict[str, Any],
    field: str,
) -> None:
    response = client.post("/api/generate", headers=auth.headers(), json=body)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "VALIDATION_ERROR" and error["details"]["field"] == field
    assert fake.history == []
    assert (
        client.get("/api/conversations", headers=auth.headers()).get_json()["conversations"] == []
    )


def test_unknown_model(client: FlaskClient, auth: Auth) -> None:
    response = client.post(
        "/api/generate", headers=auth.headers(), json={"model": "llama2-7b", "prompt": "hi"}
    )
    assert response.status_code == 404
    error = response.get_json()["error"]
    assert error["code"] == "MODEL_NOT_FOUND" and error["details"]["model_id"] == "llama2-7b"


def test_generation_needs_auth(client: FlaskClient) -> None:
    assert client.post("/api/generate", json={"prompt": "hi"}).status_code == 401


def test_models_list_merges_both_documents(client: FlaskClient, auth: Auth) -> None:
    models = client.get("/api/v1/models", headers=auth.headers()).get_json()["models"]
    smol = next(m for m in models if m["id"] == DEFAULT_MODEL_ID)
    for key in ("id", "name", "size", "family", "status", "type"):
        assert smol[key], key
    for key in ("temperature", "top_p", "top_k", "size", "quantization", "framework"):
        assert key in smol["parameters"], key


def test_system_status(client: FlaskClient, auth: Auth) -> None:
    status = client.get("/api/v1/system/status", headers=auth.headers()).get_json()
    resources = status["resources"]
    assert 0 <= resources["cpu"]["usage"] <= 100
    assert "temperature" in resources["cpu"]
    assert resources["memory"]["total"] > resources["memory"]["free"] > 0
    assert resources["gpu"] is None  # no CUDA on the test machines
    assert set(status["models"]) == {"loaded", "cached"}
    local = status["backends"][0]
    assert local["name"] == "local" and local["kind"] == "local" and "url" not in local


def test_load_and_unload(client: FlaskClient, auth: Auth) -> None:
    headers = auth.headers()
    loaded = client.post("/api/v1/models/load", headers=headers,
                         json={"model_id": DEFAULT_MODEL_ID, "parameters": {"device": "cpu"}})
    body = loaded.get_json()
    assert body["status"] == "loaded" and body["model_id"] == DEFAULT_MODEL_ID
    assert isinstance(body["load_time"], float)
    status = client.get("/api/v1/system/status", headers=headers).get_json()
    assert status["models"]["loaded"] == [DEFAULT_MODEL_ID]
    models = client.get("/api/v1/models", headers=headers).get_json()["models"]
    assert next(m for m in models if m["id"] == DEFAULT_MODEL_ID)["status"] == "loaded"
    client.post("/api/v1/models/unload", headers=headers, json={"model_id": DEFAULT_MODEL_ID})
    assert client.get("/api/v1/system/status", headers=headers).get_json()["models"]["loaded"] == []
    for bad in ({"model_id": "nope"}, {"model_id": DEFAULT_MODEL_ID,
                                       "parameters": {"device": "tpu"}},
                {"model_id": DEFAULT_MODEL_ID, "parameters": {"quantization": "2bit"}}):
        response = client.post("/api/v1/models/load", headers=headers, json=bad)
        assert response.status_code in (400, 404), bad
