"""GGUF repos through the real download API, from the Hub stand-in: a quantization is chosen
(llama.cpp's ``repo:quant``, a ``quantization`` or a ``file``), the file is checked whole
before it is registered, listed as gguf, and served by llama.cpp."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from bridge.config import DEFAULT_MODEL_ID
from bridge.models.convert import find_default_gguf
from bridge.models.store import BUILTIN, ModelStore
from tests.support.app import Auth
from tests.support.hub_standin import GGUF_REAL, GGUF_REPO, GGUF_SMALL, HubStandin, small_gguf

API = "/api/v1/models"
REPO, REAL, SMALL = GGUF_REPO, GGUF_REAL, GGUF_SMALL


@pytest.fixture
def app(make_app: Callable[..., Flask], tmp_path: Path, hub: HubStandin) -> Flask:
    return make_app({"home": tmp_path / "home", "hf_endpoint": hub.url,
                     "ratelimit_enabled": False, "download_timeout": 5, "download_retries": 1})


def store(app: Flask) -> ModelStore:
    return app.extensions["compute"].store  # type: ignore[no-any-return]


def wait(client: FlaskClient, model_id: str, headers: dict[str, str]) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        body = client.get(f"{API}/{model_id}/status", headers=headers).get_json()
        if body["status"] in ("completed", "failed", "cancelled"):
            return dict(body)
        assert time.monotonic() < deadline, body
        time.sleep(0.05)


def fetched(hub: HubStandin) -> set[str]:
    return {r["path"].rsplit("/", 1)[-1] for r in hub.requests if r["method"] == "GET"
            and "/api/models/" not in r["path"]}


def nothing_left(app: Flask) -> None:
    assert {m.id for m in store(app).list()} == set(BUILTIN)  # nothing added
    partial = store(app).root / ".partial"
    assert not partial.exists() or not any(partial.rglob("*"))


@pytest.mark.model
def test_a_chosen_quantization_is_listed_as_gguf_and_answers_on_llama_cpp(
    client: FlaskClient, auth: Auth, gguf_repo: HubStandin, app: Flask
) -> None:
    headers = auth.headers()
    started = client.post(f"{API}/download", headers=headers, json={"repo_id": f"{REPO}:q4_1"})
    assert started.status_code == 202, started.get_json()
    model_id = "smollm2-135m-instruct-gguf-q4_1"  # derived from the repo id and its tag
    done = wait(client, model_id, headers)
    assert done["status"] == "completed", done
    assert fetched(gguf_repo) == {REAL}  # one quantization, no README, not the other file
    info = store(app).verify(model_id)
    assert info.path is not None and sorted(p.name for p in info.path.iterdir()) == [
        REAL, "manifest.json"]
    listed = {m["id"]: m for m in client.get(API, headers=headers).get_json()["models"]}
    entry = listed[model_id]
    assert (entry["format"], entry["quantization"], entry["family"], entry["size"]) == (
        "gguf", "Q4_1", "llama", "135M")  # read from the GGUF's own metadata
    assert entry["bytes"] == find_default_gguf().stat().st_size
    assert entry["parameters"]["framework"] == "llama.cpp"
    assert entry["quantization_options"] == ["none"]  # a GGUF is quantized already
    assert entry["parameters"]["repetition_penalty"] == 1.1  # Ollama's defaults, as for GGUF
    tags = client.get("/ollama/api/tags", headers=headers).get_json()["models"]
    details = next(t["details"] for t in tags if t["name"].startswith(model_id))
    assert (details["format"], details["quantization_level"]) == ("gguf", "Q4_1")
    loaded = client.post(f"{API}/load", headers=headers, json={"model_id": model_id})
    assert loaded.status_code == 200 and loaded.get_json()["engine"] == "llama.cpp", loaded.json
    answers = []
    for model in (model_id, DEFAULT_MODEL_ID):  # the same weights, the same engine
        answer = client.post("/api/v1/chat/completion", headers=headers, json={
            "model_id": model, "prompt": "What is the capital of France?",
            "parameters": {"temperature": 0, "max_tokens": 12}})
        assert answer.status_code == 200, answer.get_json()
        answers.append(answer.get_json()["completion"])
    assert answers[0] == answers[1] and answers[0].strip(), answers
    assert client.delete(f"{API}/{model_id}", headers=headers).status_code == 200
    nothing_left(app)


def test_a_file_or_a_quantization_field_picks_the_file(
    client: FlaskClient, auth: Auth, gguf_repo: HubStandin, app: Flask
) -> None:
    headers = auth.headers()
    for body in ({"model_id": "by-file", "repo_id": REPO, "file": SMALL},
                 {"model_id": "by-tag", "repo_id": REPO, "quantization": "Q8_0"}):
        started = client.post(f"{API}/download", headers=headers, json=body)
        assert started.status_code == 202, started.get_json()
        assert wait(client, body["model_id"], headers)["status"] == "completed"
        info = store(app).get(body["model_id"])
        assert (info.format, info.gguf_type, info.framework) == ("gguf", "Q8_0", "llama.cpp")
    assert fetched(gguf_repo) == {SMALL}


def test_a_missing_or_ambiguous_choice_lists_the_quantizations_and_changes_nothing(
    client: FlaskClient, auth: Auth, gguf_repo: HubStandin, app: Flask
) -> None:
    headers = auth.headers()
    cases = [
        ({"repo_id": REPO}, "quantization"),  # two files, no Q4_K_M: which one?
        ({"repo_id": f"{REPO}:Q5_K_M"}, "quantization"),
        ({"repo_id": REPO, "quantization": "IQ2_XXS"}, "quantization"),
        ({"repo_id": REPO, "file": "nope.Q4_0.gguf"}, "file"),
    ]
    for body, field in cases:
        response = client.post(f"{API}/download", headers=headers,
                               json={"model_id": "gguf", **body})
        assert response.status_code == 400, (body, response.get_json())
        error = response.get_json()["error"]
        assert error["code"] == "VALIDATION_ERROR" and error["details"]["field"] == field
        assert error["details"]["quantizations"] == ["Q4_1", "Q8_0"], error
        assert "Q4_1" in error["message"] and "Q8_0" in error["message"], error["message"]
    for body in ({"repo_id": f"{REPO}:Q4_1", "quantization": "Q8_0"},
                 {"repo_id": REPO, "quantization": "Q4_1", "file": SMALL},
                 {"repo_id": REPO, "file": "../x.gguf"},
                 {"repo_id": REPO, "file": "model.bin"},
                 {"url": "http://example.org/x.gguf", "quantization": "Q4_1"}):
        response = client.post(f"{API}/download", headers=headers,
                               json={"model_id": "gguf", **body})
        assert response.status_code == 400, (body, response.get_json())
    assert fetched(gguf_repo) == set() and {m.id for m in store(app).list()} == set(BUILTIN)
    assert client.get(f"{API}/downloads", headers=headers).get_json()["downloads"] == []
    nothing_left(app)


def test_a_corrupt_or_cut_gguf_fails_as_invalid_and_leaves_nothing(
    client: FlaskClient, auth: Auth, hub: HubStandin, app: Flask, tmp_path: Path
) -> None:
    whole = small_gguf(tmp_path / "whole.gguf").read_bytes()
    hub.add_repo("someone/bad-GGUF", {"bad.Q4_0.gguf": b"GGML" + whole[4:]})
    hub.add_repo("someone/cut-GGUF", {"cut.Q8_0.gguf": whole[:-40]})  # published cut short
    cut_url = hub.add_file("cut.Q8_0.gguf", whole[:-40])
    headers = auth.headers()
    for model_id, body, says in (
        ("bad", {"repo_id": "someone/bad-GGUF"}, "not a GGUF file"),
        ("cut", {"repo_id": "someone/cut-GGUF:Q8_0"}, "not a whole GGUF file"),
        ("cut-url", {"url": cut_url}, "not a whole GGUF file"),
    ):
        started = client.post(f"{API}/download", headers=headers,
                              json={"model_id": model_id, **body})
        assert started.status_code == 202, started.get_json()
        done = wait(client, model_id, headers)
        assert (done["status"], done["error"]["error_type"]) == ("failed", "INVALID_MODEL"), done
        assert says in done["error"]["message"], done
    nothing_left(app)
