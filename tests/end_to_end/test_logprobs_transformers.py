"""logprobs on the transformers engine (log_softmax of the scores transformers computes, in a
run of its own per request), on the real default model: at the engine, with requests at once,
and through the real app with the real ``openai`` client."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from flask import Flask

from bridge.backends.local import LocalBackend
from bridge.config import DEFAULT_MODEL_ID
from bridge.router import Router
from bridge.types import Completion, GenerateRequest, Message, Token, collect
from local_api import create_app, shutdown
from tests.support.app import LiveServer
from tests.support.clients import api_key, openai_client

pytestmark = pytest.mark.model
ASK = [{"role": "user", "content": "Name three colors."}]


@pytest.fixture
def app(app_config: dict[str, Any], local_backend: LocalBackend) -> Iterator[Flask]:
    assert local_backend.engine_of(DEFAULT_MODEL_ID) == "transformers"
    application = create_app(app_config, router=Router(local_backend), local=local_backend,
                             store=local_backend.store)  # fmt: skip
    yield application
    shutdown(application)


def entries_of(answer: Completion) -> list[dict[str, Any]]:
    return [e for event in answer.events if isinstance(event, Token) for e in event.logprobs]


def ask(backend: LocalBackend, text: str, top: int = 3) -> Completion:
    return collect(backend.generate(GenerateRequest(
        DEFAULT_MODEL_ID, messages=(Message("user", text),), max_tokens=12, temperature=0,
        repetition_penalty=1.0, logprobs=top)))


def test_greedy_tokens_are_the_most_likely(local_backend: LocalBackend) -> None:
    answer = ask(local_backend, "Name three colors.")
    entries = entries_of(answer)
    # one entry per token of the text (end-of-generation, counted in usage, has none)
    assert answer.done.completion_tokens - 1 <= len(entries) <= answer.done.completion_tokens
    assert entries and "".join(e["token"] for e in entries) == answer.text
    for entry in entries:
        assert len(entry["top_logprobs"]) == 3
        best = entry["top_logprobs"][0]
        assert best["token"] == entry["token"] and entry["logprob"] <= 0
        assert best["logprob"] == pytest.approx(entry["logprob"], abs=1e-5)
        tops = [t["logprob"] for t in entry["top_logprobs"]]
        assert tops == sorted(tops, reverse=True)
        assert bytes(entry["bytes"]).decode("utf-8", "replace") == entry["token"]
    assert all(e["top_logprobs"] == [] for e in entries_of(ask(local_backend, "Hi", top=0)))


def test_requests_at_once_keep_their_own_logprobs(local_backend: LocalBackend) -> None:
    prompts = ["Name three colors.", "Write a sentence about the sea.", "Count to five."]
    alone = [ask(local_backend, p) for p in prompts]
    with ThreadPoolExecutor(len(prompts)) as pool:
        together = list(pool.map(lambda p: ask(local_backend, p), prompts))
    for one, other in zip(alone, together, strict=True):
        assert other.text == one.text
        assert "".join(e["token"] for e in entries_of(other)) == other.text
        assert [(e["token"], round(e["logprob"], 4)) for e in entries_of(other)] == [
            (e["token"], round(e["logprob"], 4)) for e in entries_of(one)]


def test_openai_chat_logprobs_on_transformers(live_server: LiveServer,
                                              http: httpx.Client) -> None:  # fmt: skip
    with openai_client(live_server.url, api_key(http), timeout=600) as client:
        answer = client.chat.completions.create(
            model=DEFAULT_MODEL_ID, messages=ASK, temperature=0, max_tokens=10,  # type: ignore[arg-type]
            logprobs=True, top_logprobs=3)
        streamed: list[Any] = []
        for chunk in client.chat.completions.create(
                model=DEFAULT_MODEL_ID, messages=ASK, temperature=0, max_tokens=10,  # type: ignore[arg-type]
                logprobs=True, top_logprobs=3, stream=True):
            if chunk.choices and chunk.choices[0].logprobs is not None:
                streamed.extend(chunk.choices[0].logprobs.content or [])
    choice = answer.choices[0]
    assert choice.logprobs is not None and choice.logprobs.content
    content = choice.logprobs.content
    assert "".join(t.token for t in content) == choice.message.content
    for token in content:
        tops = [t.logprob for t in token.top_logprobs]
        assert len(tops) == 3 and tops == sorted(tops, reverse=True)
        assert token.logprob <= tops[0] <= 0
    assert [(t.token, round(t.logprob, 3)) for t in streamed] == [
        (t.token, round(t.logprob, 3)) for t in content]


def test_ollama_logprobs_on_transformers(live_server: LiveServer, http: httpx.Client) -> None:
    import ollama

    headers = {"Authorization": f"Bearer {api_key(http)}"}
    with ollama.Client(host=f"{live_server.url}/ollama", headers=headers, timeout=600) as client:
        answer = client.chat(model=DEFAULT_MODEL_ID, messages=ASK, logprobs=True,
                             top_logprobs=2, options={"temperature": 0, "num_predict": 8})
    entries = answer.logprobs or []
    assert entries and "".join(e.token for e in entries) == answer.message.content
    assert all(len(e.top_logprobs or []) == 2 and e.logprob <= 0 for e in entries)
