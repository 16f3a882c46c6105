"""``ollama pull hf.co/{owner}/{repo}:{quant}`` through Ollama's own Python client, against the
real app on a loopback server and the Hub stand-in serving a GGUF repo with two
quantizations (Q4_1: the real default model; Q8_0: a small whole GGUF)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest
from flask import Flask

from bridge.config import DEFAULT_MODEL_ID
from bridge.models.store import BUILTIN, ModelStore
from bridge.router import Router
from local_api import create_app, shutdown
from tests.support.app import LiveServer
from tests.support.fakes import LocalFake
from tests.support.hub_standin import GGUF_REAL, GGUF_REPO, GGUF_SMALL, HubStandin, small_gguf

REPO, REAL, SMALL = GGUF_REPO, GGUF_REAL, GGUF_SMALL
PULLED = f"hf.co/{REPO}:Q8_0"


def _config(app_config: dict[str, Any], hub: HubStandin) -> dict[str, Any]:
    return {**app_config, "hf_endpoint": hub.url, "ratelimit_enabled": False,
            "download_timeout": 5, "download_retries": 1}


@pytest.fixture
def app(app_config: dict[str, Any], tmp_path: Path, gguf_repo: HubStandin) -> Iterator[Flask]:
    fake = LocalFake("Hi.", loaded=True)
    application = create_app(_config(app_config, gguf_repo), router=Router(fake), local=fake,
                             store=ModelStore(tmp_path / "models"))
    yield application
    shutdown(application)


def _key(url: str) -> str:
    """An API key (the bearer Ollama's client sends in its headers)."""
    with httpx.Client(base_url=url, timeout=30) as http:
        http.post("/api/auth/register",
                  json={"username": "olga", "email": "o@example.org", "password": "longenough"})
        login = http.post("/api/auth/login", json={"username": "olga", "password": "longenough"})
        made = http.post("/api/auth/api-keys", json={},
                         headers={"Authorization": f"Bearer {login.json()['access_token']}"})
        return str(made.json()["key"])


def _client(server: LiveServer) -> ollama.Client:
    return ollama.Client(host=f"{server.url}/ollama", timeout=60,
                         headers={"Authorization": f"Bearer {_key(server.url)}"})


@pytest.fixture
def client(live_server: LiveServer) -> Iterator[ollama.Client]:
    with _client(live_server) as session:
        yield session


def test_pull_streams_progress_then_the_model_is_listed_and_shown_by_that_name(
    client: ollama.Client, gguf_repo: HubStandin, tmp_path: Path
) -> None:
    gguf_repo.delay = 0.3  # one 64 KiB chunk: the job is seen downloading
    lines = list(client.pull(PULLED, stream=True))
    statuses = [p.status for p in lines]
    assert statuses[0] == "pulling manifest" and statuses[-3:] == [
        "verifying sha256 digest", "writing manifest", "success"], statuses
    steps = [p for p in lines if p.status == f"pulling {PULLED}"]
    size = small_gguf(tmp_path / "same.gguf").stat().st_size
    digest = "sha256:" + hashlib.sha256((tmp_path / "same.gguf").read_bytes()).hexdigest()
    assert steps and all(p.digest == digest and p.total == size for p in steps), steps
    fetched = {r["path"].rsplit("/", 1)[-1] for r in gguf_repo.requests
               if r["method"] == "GET" and "/api/models/" not in r["path"]}
    assert fetched == {SMALL}  # the one quantization named
    assert PULLED in [m.model for m in client.list().models]
    assert DEFAULT_MODEL_ID in [m.model for m in client.list().models]  # others as they were
    shown = client.show(PULLED)
    assert shown.details is not None and (shown.details.format,
                                          shown.details.quantization_level) == ("gguf", "Q8_0")
    # the catalog defaults of a GGUF (Ollama's), in Ollama's names and Modelfile lines
    assert (shown.parameters or "").splitlines() == [
        f"{'repeat_penalty':<30} 1.1", f"{'temperature':<30} 0.8",
        f"{'top_k':<30} 40", f"{'top_p':<30} 0.9"]
    assert f"FROM {PULLED}\nPARAMETER repeat_penalty" in (shown.modelfile or "")
    again = client.pull(PULLED)  # stored: one object, at once
    assert again.status == "success"


def test_huggingface_co_names_and_stream_false(client: ollama.Client, app: Flask) -> None:
    name = f"huggingface.co/{REPO}:q8_0"
    assert client.pull(name).status == "success"  # "stream": false: the final object only
    assert name in [m.model for m in client.list().models]
    assert client.show(name).details is not None
    with pytest.raises(ollama.ResponseError) as other:  # another name, not pulled
        client.show(PULLED)
    assert (other.value.status_code, other.value.error) == (404, f"model '{PULLED}' not found")


def test_bad_names_answer_in_ollamas_error_shape(client: ollama.Client, app: Flask,
                                                gguf_repo: HubStandin) -> None:
    cases = [
        (f"hf.co/{REPO}:Q5_K_M", 400, ["no Q5_K_M quantization", "available: Q4_1, Q8_0"]),
        (f"hf.co/{REPO}", 400, ["no Q4_K_M (the default)", "available: Q4_1, Q8_0"]),
        (f"hf.co/{REPO}:latest", 400, ["available: Q4_1, Q8_0"]),
        ("hf.co/nobody/no-such-GGUF:Q4_K_M", 404, ["pull model manifest", "not found"]),
        ("hf.co/just-a-repo", 400, ["invalid model name"]),
        ("hf.co/a/b/c:Q4_0", 400, ["invalid model name"]),
        ("hf.co/a--b/c:Q4_0", 400, ["invalid model name"]),
        (f"hf.co/{REPO}:Q4/0", 400, ["invalid model name"]),
    ]
    for name, status, says in cases:
        for stream in (True, False):
            with pytest.raises(ollama.ResponseError) as refused:
                list(client.pull(name, stream=True)) if stream else client.pull(name)
            assert refused.value.status_code == status, (name, refused.value.error)
            assert all(s in refused.value.error for s in says), (name, refused.value.error)
    assert {m.model for m in client.list().models} == set(BUILTIN)  # nothing pulled
    assert {r["path"].rsplit("/", 1)[-1] for r in gguf_repo.requests
            if r["method"] == "GET" and "/resolve/" in r["path"]} == set()


@pytest.mark.model
def test_a_pulled_quantization_answers_chat_on_llama_cpp(
    app_config: dict[str, Any], gguf_repo: HubStandin
) -> None:
    name = f"hf.co/{REPO}:Q4_1"
    application = create_app({**_config(app_config, gguf_repo)})
    try:
        with LiveServer(application) as server, _client(server) as client:
            assert client.pull(name).status == "success"
            answer = client.chat(model=name, messages=[
                {"role": "user", "content": "What is the capital of France?"}],
                options={"temperature": 0, "num_predict": 8})
            assert answer.model == name and (answer.message.content or "").strip()
            assert answer.eval_count and 0 < answer.eval_count <= 8
            assert [m.model for m in client.ps().models] == [name]
    finally:
        shutdown(application)
