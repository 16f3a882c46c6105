"""The Ollama-compatible surface through Ollama's own Python client, against the real app on
a loopback server (a fake backend, the Hub stand-in for /pull)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest
from flask import Flask

from bridge.config import DEFAULT_MODEL_ID
from bridge.models.store import ModelStore
from bridge.router import Router
from local_api import create_app, shutdown
from tests.support.app import LiveServer
from tests.support.fakes import LocalFake
from tests.support.hub_standin import HubStandin

ANSWER = "Bonjour from the fake backend."


@pytest.fixture
def fake() -> LocalFake:
    return LocalFake(ANSWER, loaded=True)


@pytest.fixture
def app(app_config: dict[str, Any], fake: LocalFake, tmp_path: Path,
        hub: HubStandin) -> Iterator[Flask]:
    config = {**app_config, "hf_endpoint": hub.url, "ratelimit_enabled": False,
              "download_timeout": 5, "download_retries": 1}
    application = create_app(config, router=Router(fake), local=fake,
                             store=ModelStore(tmp_path / "models"))
    yield application
    shutdown(application)


@pytest.fixture
def key(http: httpx.Client) -> str:
    """An API key (the bearer Ollama's client sends in its headers)."""
    http.post("/api/auth/register",
              json={"username": "olga", "email": "o@example.org", "password": "longenough"})
    token = http.post("/api/auth/login",
                      json={"username": "olga", "password": "longenough"}).json()["access_token"]
    made = http.post("/api/auth/api-keys", headers={"Authorization": f"Bearer {token}"}, json={})
    return str(made.json()["key"])


@pytest.fixture
def client(live_server: LiveServer, key: str) -> Iterator[ollama.Client]:
    with ollama.Client(host=f"{live_server.url}/ollama", timeout=20,
                       headers={"Authorization": f"Bearer {key}"}) as session:
        yield session


def test_chat_answers_and_maps_options(client: ollama.Client, fake: LocalFake) -> None:
    answer = client.chat(model=f"{DEFAULT_MODEL_ID}:latest", messages=[
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        options={"temperature": 0.2, "top_p": 0.5, "top_k": 7, "seed": 3, "num_predict": 40,
                 "stop": ["END"], "repeat_penalty": 1.3, "frequency_penalty": 0.4,
                 "presence_penalty": -0.5, "num_ctx": 8192}, keep_alive="5m")
    assert answer.message.role == "assistant" and answer.message.content == ANSWER
    assert (answer.done, answer.done_reason, answer.model) == (
        True, "stop", f"{DEFAULT_MODEL_ID}:latest")
    assert answer.eval_count == len(ANSWER.split()) and answer.total_duration
    sent = fake.history[-1]
    assert sent.model == DEFAULT_MODEL_ID and sent.chat and not sent.truncate
    assert [(m.role, m.content) for m in sent.messages] == [("system", "Be brief."),
                                                            ("user", "Hi")]
    assert (sent.temperature, sent.top_p, sent.top_k, sent.seed, sent.max_tokens, sent.stop) == (
        0.2, 0.5, 7, 3, 40, ("END",))
    assert (sent.repetition_penalty, sent.frequency_penalty, sent.presence_penalty) == (
        1.3, 0.4, -0.5)


def test_streamed_chat_is_one_line_per_token_then_done(
    client: ollama.Client, fake: LocalFake
) -> None:
    parts = list(client.chat(model=DEFAULT_MODEL_ID, stream=True,
                             messages=[{"role": "user", "content": "Hi"}]))
    assert [p.done for p in parts] == [False] * len(ANSWER.split()) + [True]
    assert "".join(p.message.content or "" for p in parts) == ANSWER
    last = parts[-1]
    assert (last.done_reason, last.eval_count, last.message.content) == (
        "stop", len(ANSWER.split()), "")


def test_generate_templated_raw_and_streamed(client: ollama.Client, fake: LocalFake) -> None:
    answer = client.generate(model=DEFAULT_MODEL_ID, prompt="Say hi", system="You are terse.",
                             options={"num_predict": 3})
    assert answer.response == "Bonjour from the" and answer.done_reason == "length"
    sent = fake.history[-1]
    assert sent.chat and [m.role for m in sent.messages] == ["system", "user"]
    raw = client.generate(model=DEFAULT_MODEL_ID, prompt="Once upon", raw=True)
    assert raw.response == ANSWER
    assert (fake.history[-1].prompt, fake.history[-1].chat) == ("Once upon", False)
    streamed = list(client.generate(model=DEFAULT_MODEL_ID, prompt="Say hi", stream=True))
    assert "".join(p.response or "" for p in streamed) == ANSWER and streamed[-1].done
    loaded = client.generate(model=DEFAULT_MODEL_ID)  # an empty prompt loads the model
    assert (loaded.done, loaded.done_reason, loaded.response) == (True, "load", "")
    unloaded = client.generate(model=DEFAULT_MODEL_ID, keep_alive=0)
    assert unloaded.done_reason == "unload" and fake.loaded_models() == []
    assert len(fake.history) == 3


def test_list_show_ps_and_version(client: ollama.Client, live_server: LiveServer,
                                  fake: LocalFake) -> None:
    listed = client.list().models
    assert DEFAULT_MODEL_ID in [m.model for m in listed]
    shown = client.show(DEFAULT_MODEL_ID)
    assert shown.details is not None and shown.details.parameter_size == "135M"
    assert shown.capabilities == ["completion", "tools"]  # a GGUF: llama.cpp constrains
    assert "temperature" in (shown.parameters or "")
    running = client.ps().models
    assert [m.model for m in running] == [DEFAULT_MODEL_ID] and running[0].expires_at
    fake.unload(DEFAULT_MODEL_ID)
    assert client.ps().models == []
    version = httpx.get(f"{live_server.url}/ollama/api/version").json()["version"]
    assert version and version[0].isdigit()
    assert httpx.get(f"{live_server.url}/ollama/").text == "Ollama is running"
    with pytest.raises(ollama.ResponseError) as missing:
        client.show("no-such-model")
    assert (missing.value.status_code, missing.value.error) == (
        404, "model 'no-such-model' not found")


def _weights() -> dict[str, bytes | Path]:
    return {"config.json": b'{"model_type": "llama"}', "tokenizer.json": b'{"version": "1.0"}',
            "model.safetensors": os.urandom(600_000)}


def test_pull_streams_progress_of_a_download_job(
    client: ollama.Client, hub: HubStandin, app: Flask
) -> None:
    hub.add_repo("HuggingFaceTB/SmolLM2-360M-Instruct", _weights())
    hub.delay = 0.02  # a few progress lines for 600 kB
    lines = list(client.pull("smollm2-360m-instruct:latest", stream=True))
    statuses = [p.status for p in lines]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    steps = [p for p in lines if p.status == "pulling smollm2-360m-instruct"]
    assert steps and steps[-1].total and all(p.digest for p in steps)
    done = [p.completed or 0 for p in steps]
    assert done == sorted(done) and done[-1] <= (steps[-1].total or 0)
    assert app.extensions["compute"].store.is_complete("smollm2-360m-instruct")
    assert "smollm2-360m-instruct" in [m.model for m in client.list().models]
    again = client.pull("smollm2-360m-instruct")  # stored: success at once, one object
    assert again.status == "success"
    with pytest.raises(ollama.ResponseError) as unknown:
        client.pull("no-such-model")
    assert unknown.value.status_code == 404


def test_a_failed_pull_ends_with_an_error_line(client: ollama.Client, hub: HubStandin) -> None:
    hub.add_repo("HuggingFaceTB/SmolLM2-360M-Instruct", _weights())
    hub.corrupt.add("model.safetensors")
    with pytest.raises(ollama.ResponseError) as failed:
        list(client.pull("smollm2-360m-instruct", stream=True))
    assert "pull smollm2-360m-instruct" in failed.value.error


def test_errors_come_in_ollamas_shape(client: ollama.Client, live_server: LiveServer,
                                      fake: LocalFake) -> None:
    hi = [{"role": "user", "content": "Hi"}]
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"model": "nope", "messages": hi}, 404, "model 'nope' not found"),
        ({"model": DEFAULT_MODEL_ID, "messages": hi, "options": {"top_p": 0}}, 400,
         "options.top_p: must be greater than 0 and at most 1"),
        ({"model": DEFAULT_MODEL_ID, "messages": hi, "think": 3}, 400,
         "think: must be of type boolean or string or null"),
        ({"model": DEFAULT_MODEL_ID, "messages": hi, "tools": [{"type": "function"}]}, 400,
         "tools[0].function.name is required"),
    ]
    for body, status, message in cases:
        r = httpx.post(f"{live_server.url}/ollama/api/chat", json=body,
                       headers={"Authorization": client._client.headers["authorization"]})
        assert (r.status_code, r.json()) == (status, {"error": message}), body
    with pytest.raises(ollama.ResponseError) as embed:
        client.embed(model=DEFAULT_MODEL_ID, input="hi")
    assert (embed.value.status_code, embed.value.error) == (
        400, "this model does not support embeddings")  # Ollama's words
    anonymous = httpx.post(f"{live_server.url}/ollama/api/chat",
                           json={"model": DEFAULT_MODEL_ID, "messages": hi})
    assert anonymous.status_code == 401 and set(anonymous.json()) == {"error"}
    assert httpx.get(f"{live_server.url}/ollama/api/nowhere").json() == {
        "error": "404 page not found"}
    assert httpx.get(f"{live_server.url}/ollama/api/chat").status_code == 405
    assert fake.history == []


def test_a_failure_after_the_first_byte_is_one_more_error_line(
    client: ollama.Client, fake: LocalFake, live_server: LiveServer
) -> None:
    fake.die_after = 2
    with pytest.raises(ollama.ResponseError) as died:
        list(client.chat(model=DEFAULT_MODEL_ID, stream=True,
                         messages=[{"role": "user", "content": "Hi"}]))
    assert "died after 2 tokens" in died.value.error
    r = httpx.post(f"{live_server.url}/ollama/api/generate",
                   json={"model": DEFAULT_MODEL_ID, "prompt": "Hi"},
                   headers={"Authorization": client._client.headers["authorization"]})
    lines = [json.loads(x) for x in r.text.splitlines()]
    assert r.status_code == 200 and [x.get("response") for x in lines[:2]] == [
        "Bonjour", " from"]
    assert set(lines[-1]) == {"error"} and len(lines) == 3


def test_a_rate_limit_is_a_429_in_ollamas_shape(make_app: Callable[..., Flask],
                                                app_config: dict[str, Any]) -> None:
    limited = make_app({**app_config, "anonymous_limit": "1/minute"}).test_client()
    assert limited.get("/ollama/api/version").status_code == 200
    r = limited.get("/ollama/api/version")
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    assert r.get_json()["error"].startswith("rate limit exceeded; try again in ")
