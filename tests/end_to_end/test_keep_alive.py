"""Ollama's per-request keep_alive through the real ollama client: a duration keeps the model
that long (``/api/ps`` ``expires_at``, ``/system/status``), then it unloads; -1 keeps it, 0
unloads it after the answer; a bad duration is a 400."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import httpx
import ollama
import pytest
from flask import Flask

from bridge.backends.local import LocalBackend
from bridge.config import DEFAULT_MODEL_ID, EMBEDDING_MODEL_ID
from bridge.router import Router
from local_api import create_app, shutdown
from tests.support.app import LiveServer

pytestmark = pytest.mark.model
ASK = [{"role": "user", "content": "Hi"}]


def serve(config: dict[str, Any], backend: LocalBackend) -> tuple[Flask, LiveServer]:
    app = create_app(config, router=Router(backend), local=backend, store=backend.store)
    return app, LiveServer(app)


def bearer_for(url: str) -> dict[str, str]:
    """Register and log in through the real endpoints: the Authorization header."""
    who = {"username": "kim", "password": "longenough"}
    httpx.post(f"{url}/api/auth/register", json={**who, "email": "kim@example.org"})
    token = httpx.post(f"{url}/api/auth/login", json=who).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


def expires(client: ollama.Client, model: str) -> float | None:
    for running in client.ps().models:
        if running.model == model:
            assert running.expires_at is not None
            return running.expires_at.timestamp()
    return None


def test_a_duration_keeps_the_model_that_long(app_config: dict[str, Any],
                                              llama_backend: LocalBackend) -> None:  # fmt: skip
    app, live = serve(app_config, llama_backend)
    with live, ollama.Client(host=f"{live.url}/ollama", headers=(bearer := bearer_for(live.url)),
                             timeout=120) as client:  # fmt: skip
        options = {"temperature": 0, "num_predict": 2}
        client.chat(model=DEFAULT_MODEL_ID, messages=ASK, options=options, keep_alive="10m")
        left = (expires(client, DEFAULT_MODEL_ID) or 0) - time.time()
        assert 540 < left <= 600, left
        client.chat(model=DEFAULT_MODEL_ID, messages=ASK, options=options, keep_alive=-1)
        forever = expires(client, DEFAULT_MODEL_ID)
        assert forever is not None and datetime.fromtimestamp(forever, UTC).year > 2200
        status = httpx.get(f"{live.url}/api/system/status", headers=bearer).json()
        local = next(b for b in status["backends"] if b["kind"] == "local")
        assert local["runtime_info"]["expires_at"][DEFAULT_MODEL_ID] is None  # never
        with pytest.raises(ollama.ResponseError) as bad:
            client.chat(model=DEFAULT_MODEL_ID, messages=ASK, keep_alive="soon")
        assert bad.value.status_code == 400 and "invalid duration" in bad.value.error
        client.chat(model=DEFAULT_MODEL_ID, messages=ASK, options=options, keep_alive="1h30m")
        assert 5300 < (expires(client, DEFAULT_MODEL_ID) or 0) - time.time() <= 5400
    shutdown(app)


def test_it_unloads_after_the_duration_and_at_zero(
        app_config: dict[str, Any], embedding_backend: LocalBackend) -> None:
    app, live = serve(app_config, embedding_backend)
    with live, ollama.Client(host=f"{live.url}/ollama", headers=bearer_for(live.url),
                             timeout=120) as client:  # fmt: skip
        client.embed(model=EMBEDDING_MODEL_ID, input="stay a second", keep_alive="1s")
        assert EMBEDDING_MODEL_ID in [m.model for m in client.ps().models]
        deadline = time.monotonic() + 30  # the idle check runs every 5 s at most
        while EMBEDDING_MODEL_ID in embedding_backend.loaded_models():
            assert time.monotonic() < deadline, "still loaded 30 s after keep_alive 1s"
            time.sleep(0.5)
        assert client.ps().models == []
        client.embed(model=EMBEDDING_MODEL_ID, input="and go", keep_alive=0)
        deadline = time.monotonic() + 10
        while EMBEDDING_MODEL_ID in embedding_backend.loaded_models():
            assert time.monotonic() < deadline, "still loaded after keep_alive 0"
            time.sleep(0.1)
        again = client.embed(model=EMBEDDING_MODEL_ID, input="back")  # loads on first use
        assert len(again.embeddings[0]) == 384
    shutdown(app)
