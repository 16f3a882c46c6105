"""A model's <think> reasoning, separated once in the pipeline, in each dialect: OpenAI chat's
``reasoning_content`` and Ollama's ``thinking`` (its ``think: false`` leaves it out), through
the official clients. A scripted backend stands in for the model: no small thinking model is
available offline (/v1/responses and /v1/messages: test_responses.py, test_anthropic.py)."""

from __future__ import annotations

from collections.abc import Iterator

import ollama
import openai
import pytest
from flask import Flask

from bridge.config import DEFAULT_MODEL_ID
from tests.support.app import LiveServer
from tests.support.fakes import LocalFake

M = DEFAULT_MODEL_ID
HI = [{"role": "user", "content": "hi"}]
THOUGHT = "<think>The user greets me.</think>\n\nHello there!"


@pytest.fixture
def app(scripted_app: Flask) -> Flask:
    return scripted_app


@pytest.fixture
def olla(live_server: LiveServer, key: str) -> Iterator[ollama.Client]:
    with ollama.Client(host=f"{live_server.url}/ollama", timeout=20,
                       headers={"Authorization": f"Bearer {key}"}) as session:  # fmt: skip
        yield session


def test_chat_completions_give_reasoning_content(oai: openai.OpenAI, fake: LocalFake) -> None:
    fake.queue(THOUGHT, THOUGHT, THOUGHT)
    done = oai.chat.completions.create(model=M, messages=HI)  # type: ignore[arg-type]
    message = done.choices[0].message
    assert message.content == "Hello there!"
    assert message.reasoning_content == "The user greets me."  # type: ignore[attr-defined]
    chunks = [c for c in oai.chat.completions.create(model=M, messages=HI, stream=True)  # type: ignore[arg-type]
              if c.choices]  # fmt: skip
    thought = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or ""
                      for c in chunks)  # fmt: skip
    assert thought == "The user greets me."
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello there!"
    greedy = [oai.chat.completions.create(model=M, messages=HI, temperature=0)  # type: ignore[arg-type]
              for _ in range(2)]  # the second from the cache, its reasoning kept
    assert [g.choices[0].message.reasoning_content for g in greedy] == [  # type: ignore[attr-defined]
        "The user greets me."] * 2
    assert len(fake.history) == 3


def test_ollama_gives_thinking_unless_think_is_false(olla: ollama.Client,
                                                     fake: LocalFake) -> None:  # fmt: skip
    fake.queue(THOUGHT, THOUGHT, THOUGHT, THOUGHT)
    chat = olla.chat(model=M, messages=HI, think=True)
    assert chat.message.content == "Hello there!"
    assert chat.message.thinking == "The user greets me."
    parts = list(olla.chat(model=M, messages=HI, stream=True))
    assert "".join(p.message.thinking or "" for p in parts) == "The user greets me."
    assert "".join(p.message.content or "" for p in parts) == "Hello there!"
    hidden = olla.chat(model=M, messages=HI, think=False)
    assert hidden.message.content == "Hello there!" and not hidden.message.thinking
    generated = olla.generate(model=M, prompt="hi")
    assert generated.response == "Hello there!"
    assert generated.thinking == "The user greets me."
