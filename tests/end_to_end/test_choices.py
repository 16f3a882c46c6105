"""n > 1 on /v1 through the real openai client and the llama.cpp engine: several choices,
each its own sample, streamed and not; bounded."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
from flask import Flask

from bridge.config import DEFAULT_MODEL_ID
from tests.support.app import LiveServer
from tests.support.clients import openai_client

pytestmark = pytest.mark.model
ASK = [{"role": "user", "content": "Write one short sentence about the sea."}]


@pytest.fixture
def app(llama_app: Flask) -> Flask:
    return llama_app


@pytest.fixture
def client(live_server: LiveServer, bearer: dict[str, str]) -> Iterator[openai.OpenAI]:
    token = bearer["Authorization"].removeprefix("Bearer ")
    with openai_client(live_server.url, token, timeout=120) as session:
        yield session


def test_several_choices_each_its_own_sample(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(model=DEFAULT_MODEL_ID, messages=ASK, n=3,
                                            temperature=1.0, seed=7, max_tokens=16)
    assert [c.index for c in answer.choices] == [0, 1, 2]
    texts = [c.message.content or "" for c in answer.choices]
    assert all(texts) and len(set(texts)) >= 2, texts
    again = client.chat.completions.create(model=DEFAULT_MODEL_ID, messages=ASK, n=3,
                                           temperature=1.0, seed=7, max_tokens=16)
    assert [c.message.content for c in again.choices] == texts  # seeded: reproducible
    usage = answer.usage
    assert usage is not None and 3 <= usage.completion_tokens <= 48
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    text = client.completions.create(model=DEFAULT_MODEL_ID, prompt="The sea is", n=2,
                                     temperature=1.0, seed=3, max_tokens=8)
    assert [c.index for c in text.choices] == [0, 1]


def test_streamed_choices(client: openai.OpenAI) -> None:
    parts: dict[int, list[str]] = {0: [], 1: []}
    finished: dict[int, str | None] = {}
    usage = None
    for chunk in client.chat.completions.create(
            model=DEFAULT_MODEL_ID, messages=ASK, n=2, temperature=1.0, seed=11,
            max_tokens=12, stream=True, stream_options={"include_usage": True}):
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            parts[choice.index].append(choice.delta.content or "")
            if choice.finish_reason:
                finished[choice.index] = choice.finish_reason
    assert set(finished) == {0, 1} and all("".join(p) for p in parts.values())
    whole = client.chat.completions.create(model=DEFAULT_MODEL_ID, messages=ASK, n=2,
                                           temperature=1.0, seed=11, max_tokens=12)
    assert ["".join(parts[i]) for i in (0, 1)] == [c.message.content for c in whole.choices]
    assert usage is not None and usage.completion_tokens == whole.usage.completion_tokens  # type: ignore[union-attr]


def test_n_is_bounded(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=DEFAULT_MODEL_ID, messages=ASK, n=9)
    assert caught.value.param == "n" and "at most 8" in caught.value.message
