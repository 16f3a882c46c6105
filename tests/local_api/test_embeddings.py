"""Embeddings through every surface, with the real default embedding model (all-MiniLM-L6-v2
unpacked from its package) and the real clients: openai, ollama, the SDK, LangChain.

The reference vectors were computed with sentence-transformers 6.3.0 itself
(``SentenceTransformer(<the package's folder>).encode(SENTENCES)``, 2026-12-07, CPU).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import ollama
import openai
import pytest
from flask import Flask
from langchain_openai import OpenAIEmbeddings

from bridge.backends.local import LocalBackend
from bridge.config import DEFAULT_MODEL_ID, EMBEDDING_MODEL_ID
from bridge.errors import ModelTypeMismatch, ValidationError
from bridge.router import Router
from bridge.sdk.client import Client
from tests.support.app import LiveServer

pytestmark = pytest.mark.model

SENTENCES = ["The cat sits on the mat.", "A dog plays in the park.",
             "Quantum chromodynamics describes the strong force."]
# sentence-transformers' own vectors for SENTENCES: the first four numbers of each
REFERENCE = [[0.134177, -0.0329, -0.024804, 0.041439],
             [0.062188, -0.069094, 0.06567, -0.011325],
             [-0.105048, -0.015122, -0.035303, 0.071843]]
REFERENCE_COSINE_01 = 0.1446  # cat/dog; both against the physics sentence: under 0.004


def api_key(http: httpx.Client) -> str:
    """Register and log in alice through the real endpoints; a new API key."""
    who = {"username": "alice", "password": "correct horse"}
    http.post("/api/auth/register", json={**who, "email": "alice@example.org"})
    token = http.post("/api/auth/login", json=who).json()["access_token"]
    made = http.post("/api/auth/api-keys", json={"name": "notebook"},
                     headers={"Authorization": f"Bearer {token}"})
    return str(made.json()["key"])


def sdk(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=60)


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / (
        math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def assert_reference(vectors: list[list[float]]) -> None:
    assert [len(v) for v in vectors] == [384] * len(REFERENCE)
    for got, want in zip(vectors, REFERENCE, strict=True):
        assert got[:4] == pytest.approx(want, abs=1e-5)
        assert math.sqrt(sum(x * x for x in got)) == pytest.approx(1.0, abs=1e-5)
    assert cosine(vectors[0], vectors[1]) == pytest.approx(REFERENCE_COSINE_01, abs=1e-3)


@pytest.fixture
def server(make_app: Callable[..., Flask], home: Path,
           embedding_backend: LocalBackend) -> Iterator[LiveServer]:
    application = make_app({"home": home}, router=Router(embedding_backend),
                           local=embedding_backend, store=embedding_backend.store)
    with LiveServer(application) as live:
        yield live


@pytest.fixture
def key(server: LiveServer) -> str:
    with httpx.Client(base_url=server.url) as http:
        return api_key(http)


def test_openai_client_gets_the_reference_vectors(server: LiveServer, key: str) -> None:
    with sdk(server.url, key) as client:
        default = client.embeddings.create(model=EMBEDDING_MODEL_ID, input=SENTENCES)
        floats = client.embeddings.create(model=EMBEDDING_MODEL_ID, input=SENTENCES,
                                          encoding_format="float", dimensions=384)
        one = client.embeddings.create(model=EMBEDDING_MODEL_ID, input=SENTENCES[0])
    # the client asks for base64 unless told otherwise and decodes it; both agree
    assert_reference([d.embedding for d in default.data])
    for got, want in zip(floats.data, default.data, strict=True):
        assert got.embedding == pytest.approx(want.embedding, abs=1e-6)
    assert [d.index for d in default.data] == [0, 1, 2]
    assert default.usage.prompt_tokens == default.usage.total_tokens == 31
    assert default.model == EMBEDDING_MODEL_ID and len(one.data) == 1
    assert one.data[0].embedding == pytest.approx(default.data[0].embedding, abs=1e-5)
    raw = httpx.post(f"{server.url}/v1/embeddings", headers={"Authorization": f"Bearer {key}"},
                     json={"model": EMBEDDING_MODEL_ID, "input": "x", "encoding_format": "base64"})
    assert isinstance(raw.json()["data"][0]["embedding"], str)
    assert len(base64.b64decode(raw.json()["data"][0]["embedding"])) == 384 * 4
    assert raw.headers["X-Bridge-Backend"] == "local"


def test_nearest_neighbours_make_sense(server: LiveServer, key: str) -> None:
    docs = ["Paris is the capital of France.", "Bananas are rich in potassium.",
            "The Eiffel Tower stands in Paris."]
    with sdk(server.url, key) as client:
        got = client.embeddings.create(model=EMBEDDING_MODEL_ID,
                                       input=["Which city is France's capital?", *docs])
    query, *rest = [d.embedding for d in got.data]
    scores = [cosine(query, d) for d in rest]
    assert scores[0] > scores[2] > scores[1]


def test_openai_errors(server: LiveServer, key: str) -> None:
    with sdk(server.url, key) as client:
        with pytest.raises(openai.BadRequestError) as shorter:
            client.embeddings.create(model=EMBEDDING_MODEL_ID, input="x", dimensions=128)
        with pytest.raises(openai.BadRequestError) as chat_model:
            client.embeddings.create(model=DEFAULT_MODEL_ID, input="x")
        with pytest.raises(openai.BadRequestError) as embed_model:
            client.chat.completions.create(model=EMBEDDING_MODEL_ID,
                                           messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(openai.BadRequestError) as ids:
            client.embeddings.create(model=EMBEDDING_MODEL_ID, input=[[1, 2, 3]])
        with pytest.raises(openai.BadRequestError) as empty:
            client.embeddings.create(model=EMBEDDING_MODEL_ID, input=[])
        with pytest.raises(openai.NotFoundError):
            client.embeddings.create(model="nope", input="x")
    assert shorter.value.param == "dimensions"
    assert "384-dimensional" in shorter.value.message
    assert chat_model.value.code == "model_type_mismatch"
    assert "does not embed" in chat_model.value.message
    assert "is an embedding model" in embed_model.value.message
    assert "token ids" in ids.value.message and "1 to 2048" in empty.value.message


def test_models_list_the_embedding_model(server: LiveServer, key: str) -> None:
    with sdk(server.url, key) as client:
        entry = client.models.retrieve(EMBEDDING_MODEL_ID)
    assert entry.model_extra == {"type": "embedding", "dimensions": 384,
                                 "pooling": "mean, normalized"}
    with Client(server.url, api_key=key) as native:
        model = next(m for m in native.models.list() if m.id == EMBEDDING_MODEL_ID)
        assert (model.type, model.dimensions, model.pooling) == (
            "embedding", 384, "mean, normalized")
        chat = next(m for m in native.models.list() if m.id == DEFAULT_MODEL_ID)
        assert chat.type == "chat" and "dimensions" not in chat


def test_ollama_client(server: LiveServer, key: str) -> None:
    with ollama.Client(host=f"{server.url}/ollama", timeout=60,
                       headers={"Authorization": f"Bearer {key}"}) as client:
        answer = client.embed(model=EMBEDDING_MODEL_ID, input=SENTENCES)
        older = client.embeddings(model=EMBEDDING_MODEL_ID, prompt=SENTENCES[0])
        nothing = client.embed(model=EMBEDDING_MODEL_ID, input="")
        shown = client.show(EMBEDDING_MODEL_ID)
        with pytest.raises(ollama.ResponseError) as chat_model:
            client.embed(model=DEFAULT_MODEL_ID, input="hi")
        with pytest.raises(ollama.ResponseError) as embed_model:
            client.chat(model=EMBEDDING_MODEL_ID, messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(ollama.ResponseError) as generate:
            client.generate(model=EMBEDDING_MODEL_ID, prompt="hi")
        with pytest.raises(ollama.ResponseError) as load:  # an empty prompt loads: refused too
            client.generate(model=f"{EMBEDDING_MODEL_ID}:latest")
        with pytest.raises(ollama.ResponseError) as empty:  # loading a chat model to embed
            client.embed(model=DEFAULT_MODEL_ID, input=[])
        with pytest.raises(ollama.ResponseError) as too_long:
            client.embed(model=EMBEDDING_MODEL_ID, input="word " * 400, truncate=False)
        cut = client.embed(model=EMBEDDING_MODEL_ID, input="word " * 400)
    assert_reference([list(v) for v in answer.embeddings])
    assert answer.prompt_eval_count == 31 and answer.total_duration
    assert list(older.embedding) == pytest.approx(list(answer.embeddings[0]), abs=1e-5)
    assert list(nothing.embeddings) == []
    assert shown.capabilities == ["embedding"]
    # Ollama's own words (server/routes.go; its runner's for embeddings), each a 400 here
    assert (chat_model.value.status_code, chat_model.value.error) == (
        400, "this model does not support embeddings")
    assert (empty.value.status_code, empty.value.error) == (
        400, "this model does not support embeddings")
    assert (embed_model.value.status_code, embed_model.value.error) == (
        400, f'"{EMBEDDING_MODEL_ID}" does not support chat')
    assert (generate.value.status_code, generate.value.error) == (
        400, f'"{EMBEDDING_MODEL_ID}" does not support generate')
    assert load.value.error == f'"{EMBEDDING_MODEL_ID}:latest" does not support generate'
    assert too_long.value.status_code == 400 and "at most 256" in too_long.value.error
    assert len(cut.embeddings[0]) == 384


def test_native_api_and_sdk(server: LiveServer, key: str) -> None:
    with Client(server.url, api_key=key) as client:
        got = client.embeddings.create(SENTENCES)  # the default embedding model
        with pytest.raises(ModelTypeMismatch):
            client.embeddings.create("x", model=DEFAULT_MODEL_ID)
        with pytest.raises(ValidationError) as shorter:
            client.embeddings.create("x", dimensions=100)
    assert_reference(got.embeddings)
    assert (got.model, got.dimensions, got.backend, got.engine) == (
        EMBEDDING_MODEL_ID, 384, "local", "transformers")
    assert got.usage.prompt_tokens == 31 and got.metrics.response_time
    assert "384-dimensional" in shorter.value.message


def test_embeddings_are_metered_and_rate_limited(
        make_app: Callable[..., Flask], home: Path, embedding_backend: LocalBackend) -> None:
    application = make_app({"home": home, "tier_limits": {"free": "6/minute"}},
                           router=Router(embedding_backend), local=embedding_backend,
                           store=embedding_backend.store)  # fmt: skip
    with LiveServer(application) as live, httpx.Client(base_url=live.url) as http:
        key = api_key(http)  # creating the key is one request of alice's 6
        headers = {"Authorization": f"Bearer {key}"}
        body: dict[str, Any] = {"model": EMBEDDING_MODEL_ID, "input": ["a", "b"]}
        codes = [http.post("/v1/embeddings", headers=headers, json=body).status_code
                 for _ in range(6)]
        metrics = http.get("/metrics").text
    assert codes == [200] * 5 + [429]
    assert 'bridge_embeddings_total{backend="local"} 5.0' in metrics
    assert 'bridge_embedding_tokens_total{backend="local"} 30.0' in metrics


def test_langchain_openai_embeddings(server: LiveServer, key: str) -> None:
    model = OpenAIEmbeddings(
        model=EMBEDDING_MODEL_ID, base_url=f"{server.url}/v1", api_key=key,
        check_embedding_ctx_length=False)  # else it sends tiktoken's token ids
    vectors = model.embed_documents(SENTENCES)
    assert_reference(vectors)
    assert model.embed_query(SENTENCES[0]) == pytest.approx(vectors[0], abs=1e-5)
