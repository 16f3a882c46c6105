"""A real peer as a worker (issue 19): a second, plain ``llama-server`` on loopback is attached
as an OpenAI-compatible worker through the connect endpoint; chats stream through it, and its
death mid-stream hands the answer to the local llama.cpp engine, which finishes it."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from flask import Flask

from bridge.backends.engines.llama_server import find_binary
from bridge.backends.local import LocalBackend
from bridge.config import DEFAULT_MODEL_ID
from bridge.models.convert import find_default_gguf
from bridge.models.store import ModelStore
from bridge.router import Router
from tests.support.app import LiveServer
from tests.support.connect import CONNECT, admin, ask

pytestmark = pytest.mark.model
PEER_KEY = "peer-api-key-for-the-test"


@pytest.fixture
def peer() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """llama.cpp's own server on a free loopback port, serving the default GGUF under the
    default model's id, with an API key, as a user would run it on a GPU box."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    binary = find_binary()
    assert binary is not None, "make llama-server builds it"
    process = subprocess.Popen(
        [str(binary), "-m", str(find_default_gguf()), "--host", "127.0.0.1", "--port",
         str(port), "--alias", DEFAULT_MODEL_ID, "--api-key", PEER_KEY, "-c", "2048", "-np", "2",
         "-t", "1", "--no-webui", "--jinja"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.1)
    yield process, url
    process.kill()
    process.wait(10)


@pytest.fixture
def local(tmp_path: Path) -> Iterator[LocalBackend]:
    backend = LocalBackend(ModelStore(tmp_path / "models"), keep_alive=None, engine="llama.cpp",
                           threads=1, parallel=2)  # fmt: skip
    yield backend
    backend.close()


def test_a_llama_server_worker_streams_and_its_death_is_survived(
    peer: tuple[subprocess.Popen[bytes], str], local: LocalBackend,
    make_app: Callable[..., Flask], tmp_path: Path,
) -> None:  # fmt: skip
    process, url = peer
    app = make_app({"home": tmp_path / "home"}, router=Router(local), local=local,
                   store=local.store)  # fmt: skip
    api = app.test_client()
    headers = admin(api)
    attached = api.post(CONNECT, headers=headers, json={
        "base_url": url, "api_key": PEER_KEY, "name": "peer"})
    assert attached.status_code == 200, attached.get_json()
    assert attached.get_json()["kind"] == "openai"
    assert DEFAULT_MODEL_ID in attached.get_json()["models"]
    reply = ask(api, headers, parameters={"temperature": 0, "max_tokens": 8})
    assert reply["backend"] == "peer" and reply["completion"]
    assert local.loaded_models() == []  # the worker answered; nothing ran here

    body = {"model": DEFAULT_MODEL_ID, "stream": True, "temperature": 0, "max_tokens": 300,
            "messages": [{"role": "user", "content": "Tell me a long story about a fox."}]}
    pieces: list[str] = []
    with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=120) as http, \
            http.stream("POST", "/v1/chat/completions", json=body,
                        headers={**headers, "Cache-Control": "no-cache"}) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line == "data: [DONE]":
                pieces.append("[DONE]")
                break
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            assert "error" not in chunk, chunk
            content = (chunk["choices"][0].get("delta") or {}).get("content")
            if content:
                pieces.append(content)
                if len(pieces) == 3:
                    process.kill()  # the worker dies mid-answer
    assert pieces[-1] == "[DONE]" and len(pieces) > 5
    assert local.loaded_models() == [DEFAULT_MODEL_ID]  # the local engine finished it
    status = api.get("/api/v1/system/status", headers=headers).get_json()
    assert PEER_KEY not in json.dumps(status)
