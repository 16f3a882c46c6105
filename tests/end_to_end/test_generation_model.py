"""The real default model behind the real app (model loaded once per test session)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websocket
from flask import Flask

from bridge.backends.local import LocalBackend
from bridge.config import DEFAULT_MODEL_ID
from bridge.models.store import ModelStore
from bridge.router import Router
from local_api import create_app, shutdown
from tests.support.app import LiveServer


@pytest.fixture
def app(
    app_config: dict[str, Any], model_store: ModelStore, local_backend: LocalBackend
) -> Iterator[Flask]:
    application = create_app(app_config, router=Router(local_backend), local=local_backend,
                             store=model_store)
    yield application
    shutdown(application)


def test_answers_a_question(http: httpx.Client, bearer: dict[str, str]) -> None:
    response = http.post("/api/generate", headers=bearer, json={
        "model": DEFAULT_MODEL_ID, "prompt": "What is the capital of France?",
        "parameters": {"temperature": 0, "max_tokens": 24}})
    body = response.json()
    assert response.status_code == 200, body
    assert "Paris" in body["response"]
    assert body["backend"] == "local"
    assert 0 < body["usage"]["completion_tokens"] <= 24
    assert body["metrics"]["tokens_per_second"] > 0


def test_stream_and_conversation_with_the_model(
    http: httpx.Client, bearer: dict[str, str]
) -> None:
    with http.stream("POST", "/api/v1/chat/completion", headers=bearer, json={
        "prompt": "What is the capital of France?", "stream": True,
        "parameters": {"temperature": 0, "max_tokens": 16}}) as response:
        events = [json.loads(line) for line in response.iter_lines() if line]
    tokens = "".join(e["token"] for e in events if not e["is_final"])
    final = events[-1]
    assert final["is_final"] and tokens == final["completion"] and "Paris" in tokens
    follow = http.post("/api/v1/chat/completion", headers=bearer, json={
        "prompt": "And of Germany?", "conversation_id": final["conversation_id"],
        "parameters": {"temperature": 0, "max_tokens": 16}}).json()
    assert "Berlin" in follow["completion"]
    assert follow["usage"]["prompt_tokens"] > final["usage"]["prompt_tokens"]


def test_disconnected_stream_does_not_stop_others(
    live_server: LiveServer, http: httpx.Client, bearer: dict[str, str]
) -> None:
    results: dict[str, Any] = {}

    def steady() -> None:
        with httpx.Client(base_url=live_server.url, timeout=120) as other:
            results["other"] = other.post("/api/generate", headers=bearer, json={
                "prompt": "Name three colours.", "parameters": {"max_tokens": 24,
                                                                 "temperature": 0}}).json()

    thread = threading.Thread(target=steady)
    thread.start()
    with http.stream("POST", "/api/generate", headers=bearer, json={
        "prompt": "Write a long story about a lighthouse.", "stream": True,
        "parameters": {"max_tokens": 200}}) as response:
        lines = response.iter_lines()
        first = [next(lines) for _ in range(2)]
    thread.join(timeout=120)
    assert all(not json.loads(line)["is_final"] for line in first)
    assert results["other"]["usage"]["completion_tokens"] > 0
    convs = http.get("/api/conversations", headers=bearer).json()["conversations"]
    # The abandoned story was never completed, so it was never stored.
    assert [c["title"] for c in convs] == ["Name three colours."]


def test_three_turn_conversation_is_stored_and_fed_back(
    http: httpx.Client, bearer: dict[str, str]
) -> None:
    params = {"temperature": 0, "max_tokens": 24}
    first = http.post("/api/v1/chat/completion", headers=bearer, json={
        "prompt": "My name is Ada. Please remember it.", "parameters": params}).json()
    conv = first["conversation_id"]
    second = http.post("/api/v1/chat/completion", headers=bearer, json={
        "prompt": "What is my name?", "conversation_id": conv, "parameters": params}).json()
    third = http.post("/api/generate", headers=bearer, json={
        "prompt": "Say goodbye to me.", "conversation_id": conv, "parameters": params}).json()
    assert "Ada" in second["completion"]
    assert third["conversation_id"] == conv and third["response"]
    # each turn sends the whole history: prompts grow
    assert first["usage"]["prompt_tokens"] < second["usage"]["prompt_tokens"]
    assert second["usage"]["prompt_tokens"] < third["usage"]["prompt_tokens"]
    stored = http.get(f"/api/conversations/{conv}", headers=bearer).json()["conversation"]
    assert [m["role"] for m in stored["messages"]] == ["user", "assistant"] * 3
    assert stored["messages"][3]["content"] == second["completion"]


def test_deterministic_answer_is_cached_and_identical(
    http: httpx.Client, bearer: dict[str, str]
) -> None:
    body = {"prompt": "Name a primary colour.", "parameters": {"temperature": 0,
                                                               "max_tokens": 12}}
    miss = http.post("/api/generate", headers=bearer, json=body)
    hit = http.post("/api/generate", headers=bearer, json=body)
    bypass = http.post("/api/generate", headers={**bearer, "Cache-Control": "no-cache"},
                       json=body)
    assert miss.headers["X-Cache"] == "MISS" and hit.headers["X-Cache"] == "HIT"
    assert bypass.headers["X-Cache"] == "BYPASS"
    assert hit.json()["response"] == miss.json()["response"] == bypass.json()["response"]
    assert hit.json()["cache"] == {"status": "HIT", "ttl": hit.json()["cache"]["ttl"]}


def test_a_prompt_over_the_context_is_refused_unless_truncation_is_asked(
    app_config: dict[str, Any], model_store: ModelStore, bearer: dict[str, str]
) -> None:
    # same weights, short window
    small = LocalBackend(model_store, keep_alive=None, max_context=96, engine="transformers")
    application = create_app(app_config, router=Router(small), local=small, store=model_store)
    try:
        with LiveServer(application) as server, httpx.Client(base_url=server.url,
                                                             timeout=120) as http:
            prompt = "word " * 200 + "\nWhat is the capital of France?"
            refused = http.post("/api/generate", headers=bearer, json={
                "prompt": prompt, "parameters": {"temperature": 0, "max_tokens": 8}})
            assert refused.status_code == 400
            error = refused.json()["error"]
            assert error["code"] == "CONTEXT_LENGTH_EXCEEDED"
            assert error["details"]["context"] == 96 and error["details"]["max_tokens"] == 8
            assert error["details"]["prompt_tokens"] > 200
            streamed = http.post("/v1/chat/completions", headers=bearer, json={
                "messages": [{"role": "user", "content": prompt}], "max_tokens": 8,
                "stream": True})
            assert streamed.status_code == 400  # before any SSE byte
            assert streamed.json()["error"]["code"] == "context_length_exceeded"
            turns = [{"role": "system", "content": "Answer in one word."}]
            for n in range(6):
                turns += [{"role": "user", "content": f"Tell me fact number {n} about cats."},
                          {"role": "assistant", "content": "Cats sleep a lot. " * 4}]
            turns.append({"role": "user", "content": "What is the capital of France?"})
            kept = http.post("/v1/chat/completions", headers=bearer, json={
                "messages": turns, "max_tokens": 8, "temperature": 0, "truncate": True}).json()
            assert kept["prompt_truncated"] is True
            assert kept["usage"]["prompt_tokens"] <= 96 - 8
            assert kept["usage"]["completion_tokens"] > 0
            whole = http.post("/api/generate", headers=bearer, json={
                "prompt": "hi", "parameters": {"max_tokens": 8, "temperature": 0}}).json()
            assert "prompt_truncated" not in whole
    finally:
        shutdown(application)
        small.close()


def test_an_answer_cut_inside_a_character_does_not_end_in_a_replacement_char(
    http: httpx.Client, bearer: dict[str, str]
) -> None:
    """Emoji take several byte-level tokens; a max_tokens cut between them must not leave
    U+FFFD at the end of the text."""
    for max_tokens in range(1, 7):
        answer = http.post("/v1/completions", headers=bearer, json={
            "prompt": "Emoji only: 😀😃😄😁😆😅🤣😂🙂🙃", "max_tokens": max_tokens,
            "temperature": 0}).json()
        assert not answer["choices"][0]["text"].endswith("\ufffd"), max_tokens


def test_websocket_stream_with_the_model(
    live_server: LiveServer, http: httpx.Client, bearer: dict[str, str]
) -> None:
    token = bearer["Authorization"].split()[1]
    ws = websocket.create_connection(
        live_server.url.replace("http://", "ws://") + f"/ws?token={token}", timeout=120)
    try:
        ws.send(json.dumps({"event": "chat.stream", "data": {
            "prompt": "What is the capital of France?", "model_id": DEFAULT_MODEL_ID,
            "parameters": {"temperature": 0, "max_tokens": 16}}}))
        frames = []
        while not frames or not frames[-1]["is_final"]:
            frame = json.loads(ws.recv())
            if frame["event"] == "chat.stream":
                frames.append(frame["data"])
    finally:
        ws.close()
    assert len(frames) > 2  # streamed token by token, not one lump
    assert "".join(f["token"] for f in frames) == frames[-1]["completion"]
    assert "Paris" in frames[-1]["completion"] and frames[-1]["backend"] == "local"


def test_load_with_int8_dynamic_then_back(http: httpx.Client, bearer: dict[str, str]) -> None:
    quick = http.post("/api/v1/models/load", headers=bearer, json={
        "model_id": DEFAULT_MODEL_ID, "parameters": {"device": "cpu", "quantization": "none"}})
    assert quick.status_code == 200 and quick.json()["status"] == "loaded"
    try:
        loaded = http.post("/api/v1/models/load", headers=bearer, json={
            "model_id": DEFAULT_MODEL_ID,
            "parameters": {"device": "cpu", "quantization": "int8-dynamic"}}).json()
        assert loaded["quantization"] == "int8-dynamic" and loaded["load_time"] > 0
        answer = http.post("/api/generate", headers=bearer, json={
            "prompt": "What is the capital of France?",
            "parameters": {"temperature": 0, "max_tokens": 16}}).json()
        assert "Paris" in answer["response"]
        cuda = http.post("/api/v1/models/load", headers=bearer, json={
            "model_id": DEFAULT_MODEL_ID, "parameters": {"device": "cuda"}})
        assert cuda.status_code == 501 and "CUDA" in cuda.json()["error"]["message"]
    finally:
        back = http.post("/api/v1/models/load", headers=bearer, json={
            "model_id": DEFAULT_MODEL_ID, "parameters": {"device": "cpu"}})
        assert back.json()["quantization"] == "none"


def test_seeded_answer_after_greedy_and_sampled_ran_together(
    live_server: LiveServer, bearer: dict[str, str]
) -> None:
    # Issue 12: after a greedy and a sampled request were in flight at once, a seeded
    # /v1/completions answered "__ wishershire.com/" instead of greedy's " Paris.".
    # (A patient client: the two paths take turns on the model, slow on a busy 2-core box.)
    http = httpx.Client(base_url=live_server.url, timeout=300)

    def ask(body: dict[str, Any]) -> str:
        response = http.post("/v1/completions", headers=bearer,
                             json={"model": DEFAULT_MODEL_ID, "max_tokens": 8, **body})
        assert response.status_code == 200, response.text
        return str(response.json()["choices"][0]["text"])

    together = [threading.Thread(target=ask, args=({"prompt": p, "temperature": t,
                                                    "max_tokens": 24},))
                for p, t in (("Name three colors.", 0), ("Write a word.", 0.8))]
    for thread in together:
        thread.start()
    for thread in together:
        thread.join()
    prompt = "The capital of France is"
    seeded = ask({"prompt": prompt, "temperature": 0.01, "seed": 5})
    greedy = ask({"prompt": prompt, "temperature": 0})
    http.close()
    assert "Paris" in greedy
    assert seeded == greedy
