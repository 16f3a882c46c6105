"""The real default model behind the real app (model loaded once per test session)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from flask import Flask

from bridge.local_backend import LocalBackend
from bridge.model_store import DEFAULT_MODEL_ID, ModelStore
from bridge.router import Router
from local_api import create_app, shutdown
from tests.conftest import LiveServer


@pytest.fixture
def app(
    app_config: dict[str, Any], model_store: ModelStore, local_backend: LocalBackend
) -> Iterator[Flask]:
    application = create_app(app_config, router=Router(local_backend), local=local_backend,
                             store=model_store)
    yield application
    shutdown(application)


@pytest.fixture
def headers(http: httpx.Client) -> dict[str, str]:
    http.post("/api/auth/register",
              json={"username": "alice", "email": "a@example.org", "password": "longenough"})
    token = http.post("/api/auth/login",
                      json={"username": "alice", "password": "longenough"}).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


def test_answers_a_question(http: httpx.Client, headers: dict[str, str]) -> None:
    response = http.post("/api/generate", headers=headers, json={
        "model": DEFAULT_MODEL_ID, "prompt": "What is the capital of France?",
        "parameters": {"temperature": 0, "max_tokens": 24}})
    body = response.json()
    assert response.status_code == 200, body
    assert "Paris" in body["response"]
    assert body["backend"] == "local"
    assert 0 < body["usage"]["completion_tokens"] <= 24
    assert body["metrics"]["tokens_per_second"] > 0


def test_stream_and_conversation_with_the_model(
    http: httpx.Client, headers: dict[str, str]
) -> None:
    with http.stream("POST", "/api/v1/chat/completion", headers=headers, json={
        "prompt": "What is the capital of France?", "stream": True,
        "parameters": {"temperature": 0, "max_tokens": 16}}) as response:
        events = [json.loads(line) for line in response.iter_lines() if line]
    tokens = "".join(e["token"] for e in events if not e["is_final"])
    final = events[-1]
    assert final["is_final"] and tokens == final["completion"] and "Paris" in tokens
    follow = http.post("/api/v1/chat/completion", headers=headers, json={
        "prompt": "And of Germany?", "conversation_id": final["conversation_id"],
        "parameters": {"temperature": 0, "max_tokens": 16}}).json()
    assert "Berlin" in follow["completion"]
    assert follow["usage"]["prompt_tokens"] > final["usage"]["prompt_tokens"]


def test_disconnected_stream_does_not_stop_others(
    live_server: LiveServer, http: httpx.Client, headers: dict[str, str]
) -> None:
    results: dict[str, Any] = {}

    def steady() -> None:
        with httpx.Client(base_url=live_server.url, timeout=120) as other:
            results["other"] = other.post("/api/generate", headers=headers, json={
                "prompt": "Name three colours.", "parameters": {"max_tokens": 24,
                                                                 "temperature": 0}}).json()

    thread = threading.Thread(target=steady)
    thread.start()
    with http.stream("POST", "/api/generate", headers=headers, json={
        "prompt": "Write a long story about a lighthouse.", "stream": True,
        "parameters": {"max_tokens": 200}}) as response:
        lines = response.iter_lines()
        first = [next(lines) for _ in range(2)]
    thread.join(timeout=120)
    assert all(not json.loads(line)["is_final"] for line in first)
    assert results["other"]["usage"]["completion_tokens"] > 0
    convs = http.get("/api/conversations", headers=headers).json()["conversations"]
    # The abandoned story was never completed, so it was never stored.
    assert [c["title"] for c in convs] == ["Name three colours."]
