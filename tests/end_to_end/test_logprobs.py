"""logprobs on the llama.cpp engine (llama-server's n_probs), through the real openai client:
chat and completions, streamed and not; greedy tokens are the most likely ones.

The log-probabilities are the model's own distribution (llama-server's probabilities before
sampling), as OpenAI's are: a penalty (the catalog's repeat_penalty 1.1 on the default
model) can make the greedy choice another token than the most likely one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from flask import Flask

from bridge.backends.local import LocalBackend
from bridge.config import DEFAULT_MODEL_ID
from bridge.types import GenerateRequest, Message, Token, collect
from tests.support.app import LiveServer
from tests.support.clients import openai_client

pytestmark = pytest.mark.model
ASK = [{"role": "user", "content": "Name three colors."}]


@pytest.fixture
def app(llama_app: Flask) -> Flask:
    return llama_app


@pytest.fixture
def client(live_server: LiveServer, bearer: dict[str, str]) -> Iterator[openai.OpenAI]:
    token = bearer["Authorization"].removeprefix("Bearer ")
    with openai_client(live_server.url, token, timeout=120) as session:
        yield session


def test_chat_logprobs_greedy_tokens_are_the_most_likely(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(model=DEFAULT_MODEL_ID, messages=ASK, temperature=0,
                                            max_tokens=12, logprobs=True, top_logprobs=3)
    choice = answer.choices[0]
    assert choice.logprobs is not None and choice.logprobs.content
    content = choice.logprobs.content
    assert "".join(t.token for t in content) == choice.message.content
    assert len(content) == answer.usage.completion_tokens == 12  # type: ignore[union-attr]
    for token in content:  # the model's own distribution, before the catalog's penalty
        assert len(token.top_logprobs) == 3
        tops = [t.logprob for t in token.top_logprobs]
        assert tops == sorted(tops, reverse=True) and token.logprob <= tops[0] <= 0
        assert bytes(token.bytes or []).decode("utf-8", "replace") == token.token
    streamed: list[Any] = []
    for chunk in client.chat.completions.create(
            model=DEFAULT_MODEL_ID, messages=ASK, temperature=0, max_tokens=12, logprobs=True,
            top_logprobs=3, stream=True):
        if chunk.choices and chunk.choices[0].logprobs is not None:
            streamed.extend(chunk.choices[0].logprobs.content or [])
    assert [(t.token, round(t.logprob, 3)) for t in streamed] == [
        (t.token, round(t.logprob, 3)) for t in content]
    plain = client.chat.completions.create(model=DEFAULT_MODEL_ID, messages=ASK, temperature=0,
                                           max_tokens=12, logprobs=True)  # top_logprobs 0
    assert plain.choices[0].logprobs is not None
    assert [t.top_logprobs for t in plain.choices[0].logprobs.content or []] == [[]] * 12
    without = client.chat.completions.create(model=DEFAULT_MODEL_ID, messages=ASK,
                                             temperature=0, max_tokens=4)
    assert without.choices[0].logprobs is None


def test_greedy_tokens_are_the_most_likely(llama_backend: LocalBackend) -> None:
    """With no penalty bending the distribution, each greedy token is the top alternative."""
    answer = collect(llama_backend.generate(GenerateRequest(
        DEFAULT_MODEL_ID, messages=(Message("user", "Name three colors."),), max_tokens=16,
        temperature=0, repetition_penalty=1.0, logprobs=3)))
    entries = [e for event in answer.events if isinstance(event, Token) for e in event.logprobs]
    # one entry per token of the text (an end-of-generation token, counted in usage, has none)
    assert answer.done.completion_tokens - 1 <= len(entries) <= answer.done.completion_tokens
    assert "".join(e["token"] for e in entries) == answer.text
    for entry in entries:
        best = entry["top_logprobs"][0]
        assert best["token"] == entry["token"]
        assert best["logprob"] == pytest.approx(entry["logprob"], abs=1e-5)


def test_completions_legacy_logprobs(client: openai.OpenAI) -> None:
    answer = client.completions.create(model=DEFAULT_MODEL_ID, prompt="The capital of France is",
                                       temperature=0, max_tokens=6, logprobs=2)
    probs = answer.choices[0].logprobs
    assert probs is not None and probs.tokens and len(probs.tokens) == 6
    assert "".join(probs.tokens) == answer.choices[0].text
    assert probs.text_offset == [sum(len(t) for t in probs.tokens[:i]) for i in range(6)]
    for logprob, top in zip(probs.token_logprobs or [],
                                   probs.top_logprobs or [], strict=True):  # fmt: skip
        assert len(top) == 2 and max(top.values()) <= 0 and logprob <= max(top.values())


def test_refusals(client: openai.OpenAI, live_server: LiveServer,
                  bearer: dict[str, str]) -> None:  # fmt: skip
    with pytest.raises(openai.BadRequestError) as alone:
        client.chat.completions.create(model=DEFAULT_MODEL_ID, messages=ASK, top_logprobs=2)
    assert alone.value.param == "top_logprobs"
    with pytest.raises(openai.BadRequestError) as many:
        client.chat.completions.create(model=DEFAULT_MODEL_ID, messages=ASK, logprobs=True,
                                       top_logprobs=21)
    assert many.value.param == "top_logprobs"
    wire = httpx.post(f"{live_server.url}/v1/completions", headers=bearer, json={
        "model": DEFAULT_MODEL_ID, "prompt": "x", "logprobs": 6})
    assert wire.status_code == 400 and wire.json()["error"]["param"] == "logprobs"


def test_ollama_logprobs(live_server: LiveServer, bearer: dict[str, str]) -> None:
    import ollama

    with ollama.Client(host=f"{live_server.url}/ollama", headers=bearer, timeout=120) as client:
        answer = client.chat(model=DEFAULT_MODEL_ID, messages=ASK, logprobs=True,
                             top_logprobs=2, options={"temperature": 0, "num_predict": 8})
        pieces = list(client.generate(model=DEFAULT_MODEL_ID, prompt="Name three colors.",
                                      logprobs=True, stream=True,
                                      options={"temperature": 0, "num_predict": 8}))
    entries = answer.logprobs or []
    assert "".join(e.token for e in entries) == answer.message.content and entries
    assert all(len(e.top_logprobs or []) == 2 and e.logprob <= 0 for e in entries)
    streamed = [e for piece in pieces for e in (piece.logprobs or [])]
    assert "".join(e.token for e in streamed) == "".join(p.response for p in pieces)
    assert all(e.top_logprobs == [] for e in streamed)


def test_tokenize_counts_against_the_context(live_server: LiveServer,
                                             bearer: dict[str, str]) -> None:  # fmt: skip
    """The native tokenize route and the SDK: ids, count, context; messages with the template;
    detokenize gives the text back."""
    from bridge.errors import ModelNotFound, ValidationError
    from bridge.sdk.client import Client

    token = bearer["Authorization"].removeprefix("Bearer ")
    with Client(live_server.url, access_token=token) as client:
        plain = client.tokens.tokenize("Hello world", model=DEFAULT_MODEL_ID)
        chat = client.tokens.tokenize(messages=[{"role": "user", "content": "Hello world"}])
        text = client.tokens.detokenize(plain.tokens, model=DEFAULT_MODEL_ID)
        with pytest.raises(ValidationError, match="send text or messages"):
            client.tokens.tokenize()
        with pytest.raises(ModelNotFound):
            client.tokens.tokenize("x", model="nope")
        with pytest.raises(ValidationError, match="vocabulary"):
            client.tokens.detokenize([2**31 - 1], model=DEFAULT_MODEL_ID)
        assert client.tokens.tokenize("Hello world").count == 2  # the engine is still there
    assert (plain.count, len(plain.tokens), plain.model) == (2, 2, DEFAULT_MODEL_ID)
    assert plain.context >= 2048 and text == "Hello world"
    assert chat.count > plain.count  # the chat template's own tokens
    answer = httpx.post(f"{live_server.url}/v1/chat/completions", headers=bearer, json={
        "model": DEFAULT_MODEL_ID, "max_tokens": 1,
        "messages": [{"role": "user", "content": "Hello world"}]}).json()
    assert answer["usage"]["prompt_tokens"] == chat.count  # what the request then takes
