"""A model's catalog defaults (FT's ``parameters`` on a model): GET /models shows them, a
request that omits a parameter gets them, a request that sets one wins, on every surface
(FT, AQ, OpenAI chat and completions, Ollama chat and generate, /ws) through a live server
whose backend records each request it gets."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import websocket
from flask import Flask

from bridge.config import DEFAULT_MODEL_ID
from bridge.downloads.fetch import model_facts
from bridge.models.store import BUILTIN, GENERIC_PARAMETERS, OLLAMA_PARAMETERS, ModelStore
from bridge.params import with_defaults
from bridge.router import Router
from bridge.types import GenerateRequest
from local_api import create_app, shutdown
from tests.support.app import LiveServer
from tests.support.fakes import LocalFake
from tests.support.surfaces import http_surface

M = DEFAULT_MODEL_ID


@pytest.fixture
def fake() -> LocalFake:
    return LocalFake()


@pytest.fixture
def app(app_config: dict[str, Any], fake: LocalFake, tmp_path: Path) -> Iterator[Flask]:
    application = create_app(app_config, router=Router(fake), local=fake,
                             store=ModelStore(tmp_path / "models"))
    yield application
    shutdown(application)


@pytest.fixture
def key(access_token: str) -> str:
    return access_token


def _ws(server: LiveServer, key: str, params: dict[str, Any]) -> None:
    ws = websocket.create_connection(server.url.replace("http", "ws", 1) + "/ws",
                                     header=[f"Authorization: Bearer {key}"], timeout=10)
    try:
        ws.send(json.dumps({"event": "chat.stream",
                            "data": {"model_id": M, "prompt": "hi", "parameters": params}}))
        while not ((got := json.loads(ws.recv()))["event"] == "chat.stream"
                   and got["data"]["is_final"]):
            assert got["event"] != "error", got
    finally:
        ws.close()


def _ollama(params: dict[str, Any]) -> dict[str, Any]:
    return {"num_predict" if k == "max_tokens" else k: v for k, v in params.items()}


HTTP: dict[str, Callable[..., Any]] = {
    "ft": http_surface("/api/generate", lambda p, k: {"model": M, "prompt": p,
                                                      "parameters": k}, lambda b: b["response"]),
    "aq": http_surface("/api/v1/chat/completion", lambda p, k: {
        "model_id": M, "prompt": p, "parameters": k}, lambda b: b["completion"]),
    "openai-chat": http_surface("/v1/chat/completions", lambda p, k: {
        "model": M, "messages": [{"role": "user", "content": p}], **k},
        lambda b: b["choices"][0]["message"]["content"]),
    "openai-text": http_surface("/v1/completions", lambda p, k: {"model": M, "prompt": p, **k},
                                lambda b: b["choices"][0]["text"]),
    "ollama-chat": http_surface("/ollama/api/chat", lambda p, k: {
        "model": M, "messages": [{"role": "user", "content": p}], "options": _ollama(k)},
        lambda b: b["message"]["content"]),
    "ollama-generate": http_surface("/ollama/api/generate", lambda p, k: {
        "model": M, "prompt": p, "options": _ollama(k)}, lambda b: b["response"]),
}
SURFACES = [*HTTP, "ws"]


def send(surface: str, http: httpx.Client, server: LiveServer, key: str,
         params: dict[str, Any]) -> None:  # fmt: skip
    """One request on ``surface`` that must succeed."""
    if surface == "ws":
        _ws(server, key, params)
        return
    outcome = HTTP[surface](SimpleNamespace(http=http, key=key), "defaults?", params)
    assert outcome.status == 200, outcome


DEFAULTS = BUILTIN[DEFAULT_MODEL_ID].parameters
SET = {"temperature": 0.3, "top_p": 0.5, "top_k": 7}
PENALTY_KEY = {"ft": "repetition_penalty", "aq": "repetition_penalty", "ws": "repetition_penalty",
               "ollama-chat": "repeat_penalty", "ollama-generate": "repeat_penalty"}


def test_the_default_model_carries_ollamas_defaults_and_lists_them(
    http: httpx.Client, key: str
) -> None:
    assert DEFAULTS == OLLAMA_PARAMETERS == {
        "temperature": 0.8, "top_p": 0.9, "top_k": 40, "repetition_penalty": 1.1}
    models = http.get("/api/v1/models", headers={"Authorization": f"Bearer {key}"})
    entry = next(m for m in models.json()["models"] if m["id"] == DEFAULT_MODEL_ID)
    assert {k: entry["parameters"][k] for k in DEFAULTS} == DEFAULTS


@pytest.mark.parametrize("surface", SURFACES)
def test_an_omitted_parameter_is_the_models_default_and_a_set_one_wins(
    http: httpx.Client, live_server: LiveServer, key: str, fake: LocalFake, surface: str
) -> None:
    send(surface, http, live_server, key, {"max_tokens": 4})
    send(surface, http, live_server, key, {"max_tokens": 4, **SET})
    first, second = fake.history
    assert {k: getattr(first, k) for k in DEFAULTS} == DEFAULTS
    assert {k: getattr(second, k) for k in SET} == SET
    assert second.repetition_penalty == DEFAULTS["repetition_penalty"]  # still left out
    assert first.defaulted == second.defaulted == ()  # filled once, before the backend
    if surface in PENALTY_KEY:
        send(surface, http, live_server, key, {"max_tokens": 4, PENALTY_KEY[surface]: 1.3})
        assert fake.history[-1].repetition_penalty == 1.3
        assert fake.history[-1].top_k == DEFAULTS["top_k"]


def test_a_default_out_of_range_is_skipped_and_the_client_wins() -> None:
    request = GenerateRequest("m", "hi", top_p=0.4, defaulted=("temperature", "top_k"))
    filled = with_defaults(request, {"temperature": 9, "top_k": 5, "top_p": 0.1})
    assert (filled.temperature, filled.top_k, filled.top_p) == (0.7, 5, 0.4)
    assert filled.defaulted == ()


def test_a_download_takes_its_defaults_from_generation_config(tmp_path: Path) -> None:
    folder = tmp_path / "qwen"
    folder.mkdir()
    (folder / "generation_config.json").write_text(json.dumps({  # Qwen2.5-0.5B-Instruct's
        "do_sample": True, "temperature": 0.7, "top_p": 0.8, "top_k": 20,
        "repetition_penalty": 1.05, "eos_token_id": [151645, 151643]}))
    (folder / "model.safetensors").write_bytes(b"\0" * 8)
    facts = model_facts(folder)
    assert facts["parameters"] == {"temperature": 0.7, "top_p": 0.8, "top_k": 20,
                                   "repetition_penalty": 1.05}
    store = ModelStore(tmp_path / "models")
    store.register("qwen", folder, **facts)
    assert store.defaults("qwen") == facts["parameters"]
    (folder / "generation_config.json").write_text('{"do_sample": false, "temperature": 0.1}')
    assert "parameters" not in model_facts(folder)
    store.register("plain", folder)
    assert store.defaults("plain") == GENERIC_PARAMETERS
    assert store.defaults("never-heard-of") == {}
