"""Ollama's ``options.num_ctx`` and the native load's ``num_ctx`` really set the context, through
the real ollama client against the default model on llama.cpp: a request asking more context
than the model has reloads it with that much (a new llama-server, as Ollama reloads its runner;
``/api/ps`` ``context_length`` shows it), capped by the model's training context; a request
asking less is held to it without a reload; context errors name the effective size."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import ollama
import pytest
from flask import Flask

from bridge import Client
from bridge.backends.local import LocalBackend
from bridge.config import DEFAULT_MODEL_ID
from bridge.models.store import ModelStore
from bridge.router import Router
from tests.support.app import LiveServer

pytestmark = pytest.mark.model
LONG = "The quick brown fox jumps over the lazy dog. " * 500  # ~5,000 tokens
SHORT = [{"role": "user", "content": "Hi"}]
TRAINED = 8192  # SmolLM2-135M's training context (its GGUF's llama.context_length)


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[LocalBackend]:
    """The default model on llama.cpp from its packaged GGUF, one slot (a light reload)."""
    backend = LocalBackend(ModelStore(tmp_path / "models"), keep_alive=None, engine="llama.cpp",
                           threads=2, parallel=1)  # fmt: skip
    yield backend
    backend.close()


@pytest.fixture
def served(make_app: Callable[..., Flask], home: Path,
           backend: LocalBackend) -> Iterator[tuple[str, dict[str, str]]]:  # fmt: skip
    app = make_app({"home": home}, router=Router(backend), local=backend, store=backend.store)
    with LiveServer(app) as live:
        yield live.url, bearer_for(live.url)


def bearer_for(url: str) -> dict[str, str]:
    """Register and log in through the real endpoints: the Authorization header."""
    who = {"username": "kim", "password": "longenough"}
    httpx.post(f"{url}/api/auth/register", json={**who, "email": "kim@example.org"})
    token = httpx.post(f"{url}/api/auth/login", json=who).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


def context(client: ollama.Client) -> int | None:
    (running,) = [m for m in client.ps().models if m.model == DEFAULT_MODEL_ID]
    return running.context_length


def pid(backend: LocalBackend) -> int:
    return int(backend.runtime_info["llama_servers"][DEFAULT_MODEL_ID]["pid"])


def test_num_ctx_grows_the_context_by_reloading_and_errors_name_it(
        served: tuple[str, dict[str, str]], backend: LocalBackend) -> None:
    url, headers = served
    client = ollama.Client(host=f"{url}/ollama", headers=headers)
    long = [{"role": "user", "content": LONG}]
    assert 4200 < backend.count_tokens(DEFAULT_MODEL_ID, LONG) < 7000
    client.chat(model=DEFAULT_MODEL_ID, messages=SHORT, options={"num_predict": 4})
    assert context(client) == 4096  # BRIDGE_CONTEXT_LENGTH's default
    first = pid(backend)
    with pytest.raises(ollama.ResponseError) as small:
        client.chat(model=DEFAULT_MODEL_ID, messages=long, options={"num_predict": 8})
    assert small.value.status_code == 400 and "the context is 4096" in small.value.error

    answer = client.chat(model=DEFAULT_MODEL_ID, messages=long,
                         options={"num_ctx": 8192, "num_predict": 8})
    assert answer.done and answer.prompt_eval_count > 4200  # the whole prompt was read
    assert context(client) == 8192 and pid(backend) != first  # reloaded with more context
    grown = pid(backend)

    # less than loaded: this request alone is held to it, no reload
    with pytest.raises(ollama.ResponseError) as held:
        client.generate(model=DEFAULT_MODEL_ID, prompt=LONG[:4000],
                        options={"num_ctx": 512, "num_predict": 8})
    assert "the context is 512" in held.value.error
    assert context(client) == 8192 and pid(backend) == grown
    client.chat(model=DEFAULT_MODEL_ID, messages=long, options={"num_predict": 8})  # still fits

    # more than the model was trained on: capped there, nothing to reload
    client.chat(model=DEFAULT_MODEL_ID, messages=SHORT,
                options={"num_ctx": 4 * TRAINED, "num_predict": 4})
    assert context(client) == TRAINED and pid(backend) == grown

    with pytest.raises(ollama.ResponseError) as bad:
        client.chat(model=DEFAULT_MODEL_ID, messages=SHORT, options={"num_ctx": 0})
    assert bad.value.status_code == 400 and "options.num_ctx: must be between 1" in bad.value.error


def test_load_sets_the_context_on_the_native_api_and_ollamas_empty_prompt(
        served: tuple[str, dict[str, str]], backend: LocalBackend) -> None:
    url, headers = served
    client = ollama.Client(host=f"{url}/ollama", headers=headers)
    with Client(url, username="kim", password="longenough", timeout=120) as sdk:
        loaded = sdk.models.load(DEFAULT_MODEL_ID, num_ctx=2048)
    assert (loaded.status, loaded.engine, loaded.num_ctx) == ("loaded", "llama.cpp", 2048)
    assert context(client) == 2048
    status = httpx.get(f"{url}/api/v1/system/status", headers=headers, timeout=60).json()
    local = next(b for b in status["backends"] if b["kind"] == "local")
    assert local["runtime_info"]["llama_servers"][DEFAULT_MODEL_ID]["context"] == 2048
    with pytest.raises(ollama.ResponseError) as small:
        client.generate(model=DEFAULT_MODEL_ID, prompt=LONG[:12000], options={"num_predict": 8})
    assert "the context is 2048" in small.value.error

    # Ollama's load: an empty prompt with options.num_ctx loads with that context
    done = client.generate(model=DEFAULT_MODEL_ID, prompt="", options={"num_ctx": 3000})
    assert done.done_reason == "load" and context(client) == 3000
    refused = httpx.post(f"{url}/api/v1/models/load", headers=headers, timeout=60, json={
        "model_id": DEFAULT_MODEL_ID, "parameters": {"num_ctx": 0}})
    assert refused.status_code == 400 and context(client) == 3000
