"""One request, every surface, one outcome: FT /generate, AQ /chat/completion, OpenAI
/v1/chat/completions and /v1/completions, Ollama's /ollama/api/chat and /generate, the /ws
chat.stream and the worker's /generate.

Each surface only decodes its dialect and encodes the pipeline's events, so a validation
rule, an empty backend stream, the cache and bad text must come out the same on all.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websocket
from flask import Flask

from bridge.config import DEFAULT_MODEL_ID
from bridge.errors import error_for_code
from bridge.models.store import ModelStore
from bridge.router import Router
from bridge.serving import redact_query
from bridge.signing import sign
from colab_runtime.worker import WorkerServer, create_worker_app
from local_api import create_app, shutdown
from tests.support.app import LiveServer
from tests.support.surfaces import Ctx, Outcome, SurfaceFake, code_of, http_surface

SECRET = "worker-secret-for-surface-tests"


@pytest.fixture
def fake() -> SurfaceFake:
    return SurfaceFake()


@pytest.fixture
def app(app_config: dict[str, Any], fake: SurfaceFake, tmp_path: Path) -> Iterator[Flask]:
    application = create_app(app_config, router=Router(fake), local=fake,
                             store=ModelStore(tmp_path / "models"))
    yield application
    shutdown(application)


@pytest.fixture
def worker(fake: SurfaceFake) -> Iterator[WorkerServer]:
    server = WorkerServer(create_worker_app(fake, SECRET)).start()
    yield server
    server.stop()


def _params_ft(prompt: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"model": DEFAULT_MODEL_ID, "prompt": prompt, "parameters": params}


def _params_aq(prompt: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"model_id": DEFAULT_MODEL_ID, "prompt": prompt, "parameters": params}


def _oai_chat(prompt: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"model": DEFAULT_MODEL_ID, "messages": [{"role": "user", "content": prompt}],
            **params}


def _oai_text(prompt: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"model": DEFAULT_MODEL_ID, "prompt": prompt, **params}


def _ollama_chat(prompt: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"model": DEFAULT_MODEL_ID, "messages": [{"role": "user", "content": prompt}],
            "options": _options(params)}


def _ollama_generate(prompt: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"model": DEFAULT_MODEL_ID, "prompt": prompt, "options": _options(params)}


def _options(params: dict[str, Any]) -> dict[str, Any]:
    """Ollama's spelling: the token budget is ``num_predict``."""
    return {"num_predict" if k == "max_tokens" else k: v for k, v in params.items()}


def _ws(ctx: Ctx, prompt: str, params: dict[str, Any], *, stream: bool = True,
        raw: str | None = None) -> Outcome:
    ws = websocket.create_connection(ctx.server.url.replace("http", "ws", 1) + "/ws",
                                     header=[f"Authorization: Bearer {ctx.key}"], timeout=10)
    try:
        frame = {"event": "chat.stream", "data": _params_aq(prompt, params)}
        ws.send(raw if raw is not None else json.dumps(frame))
        tokens = []
        while True:
            got = json.loads(ws.recv())
            if got["event"] == "error":
                code = code_of(got["data"])
                outcome = Outcome(error_for_code(str(code)).status, code)
                break
            if got["event"] == "chat.stream" and got["data"]["is_final"]:
                cache = (got["data"].get("cache") or {}).get("status", "BYPASS")
                outcome = Outcome(200, None, "".join(tokens), cache)
                break
            tokens.append(got["data"]["token"])
        ws.send(json.dumps({"event": "ping", "data": {}}))  # the socket is still usable
        while (got := json.loads(ws.recv()))["event"] != "pong":
            assert got["event"] == "chat_update"  # the push for the stored exchange
        return outcome
    finally:
        ws.close()


def _worker(ctx: Ctx, prompt: str, params: dict[str, Any], *, stream: bool = True,
            raw: str | None = None) -> Outcome:
    body = (raw if raw is not None else json.dumps(
        {"model": DEFAULT_MODEL_ID, "prompt": prompt, **params})).encode()
    r = httpx.post(ctx.worker.url + "/generate", content=body,
                   headers=sign(SECRET, "POST", "/generate", body), timeout=10)
    if r.status_code != 200:
        return Outcome(r.status_code, code_of(r.json(), r.status_code))
    lines = [json.loads(x) for x in r.text.splitlines() if x.strip()]
    bad = [x for x in lines if x.get("type") == "error"]
    if bad:
        return Outcome(200, code_of(bad[0]))
    return Outcome(200, None, "".join(x.get("text", "") for x in lines if x["type"] == "token"))


SURFACES: dict[str, Callable[..., Outcome]] = {
    "ft": http_surface("/api/generate", _params_ft, lambda b: b["response"]),
    "aq": http_surface("/api/v1/chat/completion", _params_aq, lambda b: b["completion"]),
    "openai-chat": http_surface("/v1/chat/completions", lambda p, k: _oai_chat(p, k),
                         lambda b: b["choices"][0]["message"]["content"]),
    "openai-text": http_surface("/v1/completions", lambda p, k: _oai_text(p, k),
                         lambda b: b["choices"][0]["text"]),
    "ollama-chat": http_surface("/ollama/api/chat", _ollama_chat,
                                lambda b: b["message"]["content"]),
    "ollama-generate": http_surface("/ollama/api/generate", _ollama_generate,
                                    lambda b: b["response"]),
    "ws": _ws,
}
API_SURFACES = list(SURFACES)


@pytest.fixture
def ctx(http: httpx.Client, access_token: str, live_server: LiveServer,
        worker: WorkerServer) -> Ctx:
    return Ctx(http, access_token, live_server, worker)


def _oai_code(code: str | None) -> str | None:
    """OpenAI's error codes are lower case; the envelope's upper case."""
    return code.upper() if code else None


@pytest.mark.parametrize("params", [{"top_p": 0}, {"top_k": 1001}, {"seed": 2**32}],
                         ids=["top_p=0", "top_k=1001", "seed=2**32"])
@pytest.mark.parametrize("surface", [*API_SURFACES, "worker"])
def test_one_validator_on_every_surface_and_the_worker(
    ctx: Ctx, fake: SurfaceFake, surface: str, params: dict[str, Any]
) -> None:
    call = _worker if surface == "worker" else SURFACES[surface]
    outcome = call(ctx, "hello", params)
    assert (outcome.status, _oai_code(outcome.code)) == (400, "VALIDATION_ERROR")
    assert fake.history == []  # refused before it reached a backend


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("surface", [*API_SURFACES, "worker"])
def test_an_empty_backend_stream_is_a_503_everywhere(
    ctx: Ctx, fake: SurfaceFake, surface: str, stream: bool
) -> None:
    fake.empty = True
    call = _worker if surface == "worker" else SURFACES[surface]
    outcome = call(ctx, "hello", {}, stream=stream)
    assert (outcome.status, _oai_code(outcome.code)) == (503, "BACKEND_UNAVAILABLE")


@pytest.mark.parametrize("surface", API_SURFACES)
def test_the_cache_serves_every_surface(ctx: Ctx, fake: SurfaceFake, surface: str) -> None:
    fake.queue("First answer here.", "Second answer, different.")
    params = {"temperature": 0}
    first = SURFACES[surface](ctx, "cached?", params)
    second = SURFACES[surface](ctx, "cached?", params)
    assert (first.status, first.cache, first.text.strip()) == (200, "MISS", "First answer here.")
    assert (second.status, second.cache, second.text) == (200, "HIT", first.text)
    assert len(fake.history) == 1
    sampled = SURFACES[surface](ctx, "cached?", {"temperature": 0.9})
    assert sampled.cache == "BYPASS"


RAW_SURROGATE = {
    "ft": '{"prompt": "hi \\ud83d there"}',
    "aq": '{"prompt": "hi \\ud83d there"}',
    "openai-chat": '{"messages": [{"role": "user", "content": "hi \\ud83d there"}]}',
    "openai-text": '{"prompt": "hi \\ud83d there"}',
    "ollama-chat": '{"model": "m", "messages": [{"role": "user", "content": "hi \\ud83d there"}]}',
    "ollama-generate": '{"model": "m", "prompt": "hi \\ud83d there"}',
    "ws": '{"event": "chat.stream", "data": {"prompt": "hi \\ud83d there"}}',
    "worker": '{"model": "m", "prompt": "hi \\ud83d there"}',
}


@pytest.mark.parametrize("surface", [*API_SURFACES, "worker"])
def test_an_unpaired_surrogate_is_a_400_naming_the_field(
    ctx: Ctx, fake: SurfaceFake, surface: str
) -> None:
    call = _worker if surface == "worker" else SURFACES[surface]
    outcome = call(ctx, "", {}, stream=True, raw=RAW_SURROGATE[surface])
    assert (outcome.status, _oai_code(outcome.code)) == (400, "VALIDATION_ERROR")
    assert fake.history == []


def test_the_surrogate_error_names_the_field_in_each_dialect(ctx: Ctx) -> None:
    headers = {"Authorization": f"Bearer {ctx.key}", "Content-Type": "application/json"}
    r = ctx.http.post("/v1/chat/completions", content=RAW_SURROGATE["openai-chat"],
                      headers=headers)
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "messages[0].content"
    r = ctx.http.post("/api/generate", content=RAW_SURROGATE["ft"], headers=headers)
    assert r.json()["error"]["details"]["field"] == "prompt"
    r = ctx.http.post("/ollama/api/chat", content=RAW_SURROGATE["ollama-chat"], headers=headers)
    assert r.json()["error"].startswith("messages[0].content: ")


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("surface", API_SURFACES)
def test_context_overflow_is_a_400_before_any_byte(
    ctx: Ctx, fake: SurfaceFake, surface: str, stream: bool
) -> None:
    fake.context = 50
    outcome = SURFACES[surface](ctx, "word " * 40, {"max_tokens": 20}, stream=stream)
    assert (outcome.status, _oai_code(outcome.code)) == (400, "CONTEXT_LENGTH_EXCEEDED")


def test_openai_context_error_uses_openais_code(ctx: Ctx, fake: SurfaceFake) -> None:
    fake.context = 50
    r = ctx.http.post("/v1/chat/completions", headers={"Authorization": f"Bearer {ctx.key}"},
                      json=_oai_chat("word " * 40, {"max_tokens": 20}))
    error = r.json()["error"]
    assert r.status_code == 400 and error["code"] == "context_length_exceeded"
    assert "40" in error["message"] and "20" in error["message"] and "50" in error["message"]


def test_an_unexpected_failure_on_ws_is_an_internal_error_frame(
    ctx: Ctx, fake: SurfaceFake
) -> None:
    fake.fail = RuntimeError("boom")
    ws = websocket.create_connection(ctx.server.url.replace("http", "ws", 1) + "/ws",
                                     header=[f"Authorization: Bearer {ctx.key}"], timeout=10)
    try:
        ws.send(json.dumps({"event": "chat.stream", "data": {"prompt": "hi"}}))
        got = json.loads(ws.recv())
        assert got["event"] == "error"
        assert got["data"]["error"]["code"] == "INTERNAL_ERROR"
        assert got["data"]["error"]["request_id"]
        assert "boom" not in json.dumps(got)
        ws.send(json.dumps({"event": "ping", "data": {}}))
        assert json.loads(ws.recv())["event"] == "pong"
    finally:
        ws.close()


def test_system_fingerprint_is_the_same_on_every_chunk(ctx: Ctx) -> None:
    r = ctx.http.post("/v1/chat/completions", headers={"Authorization": f"Bearer {ctx.key}"},
                      json={**_oai_chat("hi", {}), "stream": True})
    chunks = [json.loads(x[6:]) for x in r.text.splitlines()
              if x.startswith("data: {")]
    prints = {c["system_fingerprint"] for c in chunks}
    assert len(chunks) > 2 and len(prints) == 1 and None not in prints


def test_a_token_in_the_query_is_masked_in_access_lines() -> None:
    line = "GET /ws?token=eyJhbGciOi.secret.part&x=1 HTTP/1.1"
    assert redact_query(line) == "GET /ws?token=***&x=1 HTTP/1.1"
