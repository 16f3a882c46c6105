"""Ollama's own client against the real default model: an answer, streamed and whole, and
truncation only when the body asks for it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import ollama
import pytest
from flask import Flask

from bridge.backends.local import LocalBackend
from bridge.config import DEFAULT_MODEL_ID
from bridge.models.store import ModelStore
from bridge.router import Router
from local_api import create_app, shutdown
from tests.support.app import LiveServer

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture
def app(
    app_config: dict[str, Any], model_store: ModelStore, local_backend: LocalBackend
) -> Iterator[Flask]:
    application = create_app(app_config, router=Router(local_backend), local=local_backend,
                             store=model_store)
    yield application
    shutdown(application)


@pytest.mark.model
def test_ollama_client_chats_with_the_model(live_server: LiveServer,
                                            bearer: dict[str, str]) -> None:
    with ollama.Client(host=f"{live_server.url}/ollama", headers=bearer, timeout=120) as client:
        options = {"temperature": 0, "num_predict": 24}
        reply = client.chat(model=DEFAULT_MODEL_ID, messages=QUESTION, options=options)
        assert "Paris" in (reply.message.content or "")
        assert reply.eval_count is not None and 0 < reply.eval_count <= 24
        parts = list(client.chat(model=DEFAULT_MODEL_ID, messages=QUESTION, options=options,
                                 stream=True))
        assert "".join(p.message.content or "" for p in parts) == reply.message.content
        assert parts[-1].done and parts[-1].prompt_eval_count == reply.prompt_eval_count


@pytest.mark.model
def test_truncate_is_opt_in_with_the_model(
    app_config: dict[str, Any], model_store: ModelStore, bearer: dict[str, str]
) -> None:
    small = LocalBackend(model_store, keep_alive=None, max_context=96)  # same weights, short window
    application = create_app(app_config, router=Router(small), local=small, store=model_store)
    try:
        with LiveServer(application) as server:
            body = {"model": DEFAULT_MODEL_ID, "stream": False,
                    "messages": [{"role": "user", "content": "word " * 200},
                                 {"role": "assistant", "content": "Noted."}, *QUESTION],
                    "options": {"temperature": 0, "num_predict": 8}}
            url = f"{server.url}/ollama/api/chat"
            refused = httpx.post(url, json=body, headers=bearer, timeout=120)
            assert refused.status_code == 400
            assert "exceeds the context length" in refused.json()["error"]
            cut = httpx.post(url, json={**body, "truncate": True}, headers=bearer, timeout=120)
            answer = cut.json()
            assert cut.status_code == 200 and answer["prompt_truncated"] is True, answer
            assert answer["prompt_eval_count"] <= 96 - 8 and answer["eval_count"] > 0
    finally:
        shutdown(application)
        small.close()
