"""The llama.cpp engine behind the real app: which engine serves is said by /models,
/system/status, every answer and /metrics; a load may name its engine."""

from __future__ import annotations

import threading

import httpx
import pytest
from flask import Flask

from bridge.config import DEFAULT_MODEL_ID

pytestmark = pytest.mark.model


@pytest.fixture
def app(llama_app: Flask) -> Flask:
    return llama_app


def test_every_surface_says_llama_cpp_serves(http: httpx.Client, bearer: dict[str, str]) -> None:
    answer = http.post("/api/generate", headers=bearer, json={
        "model": DEFAULT_MODEL_ID, "prompt": "Name three colors.",
        "parameters": {"temperature": 0, "max_tokens": 12}}).json()
    assert answer["backend"] == "local" and answer["engine"] == "llama.cpp", answer
    assert answer["usage"]["completion_tokens"] > 0
    models = {m["id"]: m for m in http.get("/api/models", headers=bearer).json()["models"]}
    assert models[DEFAULT_MODEL_ID]["engine"] == "llama.cpp"
    status = http.get("/api/system/status", headers=bearer).json()
    local = next(b for b in status["backends"] if b["kind"] == "local")
    assert local["runtime_info"]["engines"] == {DEFAULT_MODEL_ID: "llama.cpp"}
    assert local["runtime_info"]["llama_cpp"]["available"] is True


def test_load_names_its_engine(http: httpx.Client, bearer: dict[str, str]) -> None:
    loaded = http.post("/api/models/load", headers=bearer, json={
        "model_id": DEFAULT_MODEL_ID, "parameters": {"engine": "llama.cpp"}})
    assert loaded.status_code == 200, loaded.text
    assert loaded.json()["engine"] == "llama.cpp"
    unknown = http.post("/api/models/load", headers=bearer, json={
        "model_id": DEFAULT_MODEL_ID, "parameters": {"engine": "vllm"}})
    assert unknown.status_code == 400


def slots(http: httpx.Client, bearer: dict[str, str]) -> int:
    status = http.get("/api/system/status", headers=bearer).json()
    local = next(b for b in status["backends"] if b["kind"] == "local")
    return int(local["runtime_info"]["llama_servers"][DEFAULT_MODEL_ID]["parallel"])


def test_a_load_sets_the_models_slots(http: httpx.Client, bearer: dict[str, str]) -> None:
    before = slots(http, bearer)
    for bad in (0, 65, "2"):
        refused = http.post("/api/models/load", headers=bearer, json={
            "model_id": DEFAULT_MODEL_ID, "parameters": {"num_parallel": bad}})
        assert refused.status_code == 400 and "num_parallel" in refused.text
    assert slots(http, bearer) == before
    try:
        loaded = http.post("/api/models/load", headers=bearer, json={
            "model_id": DEFAULT_MODEL_ID, "parameters": {"num_parallel": 1}})
        assert loaded.status_code == 200, loaded.text
        assert slots(http, bearer) == 1
        answer = http.post("/api/generate", headers=bearer, json={
            "model": DEFAULT_MODEL_ID, "prompt": "Name three colors.",
            "parameters": {"temperature": 0, "max_tokens": 4}}).json()
        assert answer["engine"] == "llama.cpp" and answer["usage"]["completion_tokens"] == 4
    finally:
        http.post("/api/models/load", headers=bearer, json={
            "model_id": DEFAULT_MODEL_ID, "parameters": {"num_parallel": before}})


def test_concurrent_clients_queue_and_metrics_show_it(
    http: httpx.Client, bearer: dict[str, str]
) -> None:
    texts: list[str] = []

    def client() -> None:
        response = http.post("/v1/completions", headers={**bearer, "Cache-Control": "no-cache"},
                             json={"model": DEFAULT_MODEL_ID, "prompt": "The capital of France is",
                                   "max_tokens": 8, "temperature": 0})  # fmt: skip
        texts.append(response.json()["choices"][0]["text"])

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(texts) == 4 and len(set(texts)) == 1 and "Paris" in texts[0]
    scrape = http.get("/metrics").text
    assert f'bridge_engine_queue_depth{{model="{DEFAULT_MODEL_ID}"}} 0.0' in scrape
    assert f'bridge_engine_slots_busy{{model="{DEFAULT_MODEL_ID}"}} 0.0' in scrape
    assert f'bridge_engine_slots{{model="{DEFAULT_MODEL_ID}"}}' in scrape
