"""The /v1 OpenAI-compatible surface, driven by the official `openai` package over real HTTP.

A FakeBackend stands behind the Router (fast, with a history of requests); one test runs the
real default model. The blueprint is registered here when create_app does not do it yet.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from flask import Flask

from bridge.backends.local import LocalBackend
from bridge.config import DEFAULT_MODEL_ID
from bridge.errors import BackendUnavailable
from bridge.models.store import ModelStore
from bridge.router import Router
from tests.support.app import LiveServer
from tests.support.fakes import FakeBackend, LocalFake


def v1_app(
    make_app: Callable[..., Flask], config: dict[str, Any], backend: Any, store: Any
) -> Flask:
    """An app on ``backend`` (create_app serves /v1 itself)."""
    application = make_app(config, router=Router(backend), local=backend, store=store)
    assert "openai_compat.chat_completions" in application.view_functions
    return application


@pytest.fixture
def fake() -> LocalFake:
    return LocalFake()


@pytest.fixture
def app(
    make_app: Callable[..., Flask], app_config: dict[str, Any], fake: FakeBackend, tmp_path: Path
) -> Flask:
    return v1_app(make_app, app_config, fake, ModelStore(tmp_path / "models"))


def api_key(http: httpx.Client, username: str = "alice", *, jwt: bool = False) -> str:
    """Register and log in through the real endpoints; a new API key (or the access token)."""
    who = {"username": username, "password": "correct horse"}
    http.post("/api/auth/register", json={**who, "email": f"{username}@example.org"})
    token = http.post("/api/auth/login", json=who).json()["access_token"]
    if jwt:
        return str(token)
    bearer = {"Authorization": f"Bearer {token}"}
    created = http.post("/api/auth/api-keys", json={"name": "notebook"}, headers=bearer)
    assert created.status_code == 201, created.text
    return str(created.json()["key"])


HI = [{"role": "user", "content": "hi"}]


def sdk(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=30)


@pytest.fixture
def key(http: httpx.Client) -> str:
    return api_key(http)


@pytest.fixture
def oai(live_server: LiveServer, key: str) -> Iterator[openai.OpenAI]:
    with sdk(live_server.url, key) as client:
        yield client


def test_models_list(oai: openai.OpenAI, fake: FakeBackend, app: Flask) -> None:
    router = app.extensions["compute"].router
    router.add_worker(FakeBackend("gpu-box", models=["llama-remote"]))
    router.probe_all()  # what the probe thread does: learn the worker's models
    models = {m.id: m for m in oai.models.list()}
    assert models[DEFAULT_MODEL_ID].object == "model"
    assert models[DEFAULT_MODEL_ID].owned_by == "compute-bridge"
    assert models["llama-remote"].owned_by == "gpu-box"
    assert oai.models.retrieve(DEFAULT_MODEL_ID).id == DEFAULT_MODEL_ID
    with pytest.raises(openai.NotFoundError):
        oai.models.retrieve("llama2-7b")


def test_chat_completion(
    oai: openai.OpenAI, fake: FakeBackend, http: httpx.Client, key: str
) -> None:
    fake.queue("Hello there, notebook.")
    raw = oai.chat.completions.with_raw_response.create(
        model=DEFAULT_MODEL_ID,
        messages=[
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hi!"}]},
        ],
        temperature=0.3,
        seed=7,
        top_p=0.9,
        user="nb-1",
        frequency_penalty=0.5,
    )
    answer = raw.parse()
    assert answer.object == "chat.completion" and answer.id.startswith("chatcmpl-")
    assert answer.choices[0].message.role == "assistant"
    assert answer.choices[0].message.content == "Hello there, notebook."
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None and answer.usage.completion_tokens == 3
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + 3
    assert answer.model == DEFAULT_MODEL_ID and answer.system_fingerprint.startswith("fp_bridge_")
    assert raw.headers["X-Bridge-Backend"] == "local"
    assert raw.headers["X-Bridge-Ignored-Params"] == "user"  # frequency_penalty is used (issue 12)
    request = fake.history[-1]
    assert request.chat and (request.temperature, request.seed, request.top_p) == (0.3, 7, 0.9)
    assert [m.content for m in request.messages] == ["Be brief.", "Hi!"]
    assert [m.role for m in request.messages] == ["system", "user"]
    # Stored like every generation: the exchange is in the user's conversations.
    listed = http.get("/api/conversations", headers={"Authorization": f"Bearer {key}"}).json()
    assert listed["conversations"][0]["message_count"] == 2


def test_chat_stream_with_usage(oai: openai.OpenAI, fake: FakeBackend) -> None:
    fake.queue("one two three")
    chunks = list(
        oai.chat.completions.create(
            model=DEFAULT_MODEL_ID,
            messages=[{"role": "user", "content": "count"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three"
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finals] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3
    assert len({c.id for c in chunks}) == 1 and chunks[0].object == "chat.completion.chunk"


def test_completions(oai: openai.OpenAI, fake: FakeBackend) -> None:
    fake.queue("upon a time")
    answer = oai.completions.create(model=DEFAULT_MODEL_ID, prompt="Once", max_tokens=8)
    assert answer.object == "text_completion" and answer.choices[0].text == "upon a time"
    request = fake.history[-1]
    assert not request.chat and request.prompt == "Once" and request.max_tokens == 8
    fake.queue("a b c")
    streamed = oai.completions.create(model=DEFAULT_MODEL_ID, prompt=["Once"], stream=True)
    assert "".join(c.choices[0].text for c in streamed) == "a b c"


def test_stop_and_max_tokens(oai: openai.OpenAI, fake: FakeBackend) -> None:
    fake.queue("alpha beta gamma delta epsilon")
    answer = oai.chat.completions.create(
        model=DEFAULT_MODEL_ID, messages=HI, max_tokens=2, stop="END"
    )
    assert answer.choices[0].message.content == "alpha beta"
    assert answer.choices[0].finish_reason == "length"
    assert fake.history[-1].stop == ("END",) and fake.history[-1].max_tokens == 2
    ask: dict[str, Any] = {"model": DEFAULT_MODEL_ID, "messages": HI, "stop": ["x", "y"]}
    oai.chat.completions.create(**ask, max_completion_tokens=3)
    assert fake.history[-1].stop == ("x", "y") and fake.history[-1].max_tokens == 3


def test_keys_and_tokens(live_server: LiveServer, http: httpx.Client) -> None:
    with sdk(live_server.url, api_key(http, jwt=True)) as client:  # a JWT works as the key too
        assert DEFAULT_MODEL_ID in {m.id for m in client.models.list()}
    with sdk(live_server.url, "cb_not-a-real-key") as client:
        with pytest.raises(openai.AuthenticationError) as caught:
            client.models.list()
    assert caught.value.code == "invalid_api_key" and caught.value.type == "authentication_error"


def test_unknown_model_is_not_found(oai: openai.OpenAI, fake: FakeBackend) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        oai.chat.completions.create(model="llama2-7b", messages=HI)
    assert caught.value.code == "model_not_found" and caught.value.param == "model"
    assert "llama2-7b" in caught.value.message
    assert fake.history == []


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "messages[0].content[0]",
        ),
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": 3}, "temperature"),
        ({"n": 9}, "n"),
        ({"max_tokens": 10**9}, "max_tokens"),
        ({"stop": ["a"] * 5}, "stop"),
        ({"seed": "x"}, "seed"),
        ({"presence_penalty": "high"}, "presence_penalty"),
        ({"tools": [{"type": "retrieval"}]}, "tools[0].type"),
    ],
)
def test_bad_input_is_bad_request(
    oai: openai.OpenAI, fake: FakeBackend, extra: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        oai.chat.completions.create(**{"model": DEFAULT_MODEL_ID, "messages": HI, **extra})
    assert caught.value.param == param and caught.value.type == "invalid_request_error"
    assert fake.history == []


def test_wire_errors_and_sse_format(http: httpx.Client, key: str, fake: FakeBackend) -> None:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    malformed = http.post("/v1/chat/completions", headers=headers, content=b"{not json")
    assert malformed.status_code == 400
    assert set(malformed.json()["error"]) == {"message", "type", "param", "code"}
    missing = http.post("/v1/chat/completions", headers=headers, json={"model": DEFAULT_MODEL_ID})
    assert missing.status_code == 400 and "messages" in missing.json()["error"]["message"]
    assert http.get("/v1/chat/completions", headers=headers).status_code == 405
    assert http.get("/v1/embeddings", headers=headers).status_code == 405
    nowhere = http.get("/v1/audio/speech", headers=headers)
    assert nowhere.status_code == 404 and nowhere.json()["error"]["type"] == "invalid_request_error"
    anonymous = http.get("/v1/models")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "invalid_api_key"
    fake.queue("hi you")
    ask = {"messages": HI, "stream": True}
    with http.stream("POST", "/v1/chat/completions", headers=headers, json=ask) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        body = response.read().decode()
    events = [e for e in body.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e[len("data: ") :]) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [c["choices"][0]["delta"].get("content") for c in chunks[1:3]] == ["hi", " you"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["backend"] == "local"


def test_backend_errors(oai: openai.OpenAI, fake: FakeBackend) -> None:
    fake.fail = BackendUnavailable("no compute")
    with pytest.raises(openai.InternalServerError) as caught:
        oai.chat.completions.create(model=DEFAULT_MODEL_ID, messages=HI)
    assert caught.value.status_code == 503 and caught.value.code == "backend_unavailable"
    fake.fail = None
    fake.queue("alpha beta gamma")
    fake.die_after = 1
    stream = oai.chat.completions.create(model=DEFAULT_MODEL_ID, stream=True, messages=HI)
    with pytest.raises(openai.APIError, match="died after 1 tokens"):
        list(stream)


def test_rate_limited(
    home: Path, make_app: Callable[..., Flask], fake: FakeBackend, tmp_path: Path
) -> None:
    config = {"home": home, "tier_limits": {"free": "3/minute"}}
    application = v1_app(make_app, config, fake, ModelStore(tmp_path / "models"))
    with LiveServer(application) as server, httpx.Client(base_url=server.url) as http:
        key = api_key(http)  # creating the key is the user's first request
        with sdk(server.url, key) as client:
            client.models.list()
            raw = client.models.with_raw_response.list()  # OpenAI's own header names
            with pytest.raises(openai.RateLimitError) as caught:
                client.models.list()
    assert raw.headers["x-ratelimit-limit-requests"] == "3"
    assert raw.headers["x-ratelimit-remaining-requests"] == "0"
    assert re.fullmatch(r"(\d+m)?\d+s", raw.headers["x-ratelimit-reset-requests"])
    error = caught.value
    assert error.code == "rate_limit_exceeded" and error.type == "requests"
    assert 1 <= int(error.response.headers["Retry-After"]) <= 60
    assert error.response.headers["X-RateLimit-Remaining"] == "0"
    # what the openai client reads first to time its retry (_parse_retry_after_header)
    assert int(error.response.headers["retry-after-ms"]) == 1000 * int(
        error.response.headers["Retry-After"])


@pytest.mark.model
def test_real_model_knows_paris(
    make_app: Callable[..., Flask],
    home: Path,
    model_store: ModelStore,
    local_backend: LocalBackend,
) -> None:
    application = v1_app(make_app, {"home": home}, local_backend, model_store)
    with LiveServer(application) as server, httpx.Client(base_url=server.url) as http:
        with sdk(server.url, api_key(http)) as client:
            answer = client.chat.completions.create(
                model=DEFAULT_MODEL_ID,
                temperature=0,
                max_tokens=24,
                messages=[{"role": "user", "content": "What is the capital of France?"}],
            )
    assert "Paris" in (answer.choices[0].message.content or "")
    assert answer.usage is not None and 0 < answer.usage.completion_tokens <= 24


def test_odd_ignored_field_names_never_reach_the_header(
    http: httpx.Client, key: str, fake: FakeBackend
) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    fake.queue("fine")
    body = {"prompt": "0", "a\r\nSet-Cookie: x=1": [], "é": 1, "x" * 100: 1, "user": "u"}
    answer = http.post("/v1/completions", headers=headers, json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["text"] == "fine"
    assert answer.headers["X-Bridge-Ignored-Params"] == "user"
    assert "set-cookie" not in answer.headers
