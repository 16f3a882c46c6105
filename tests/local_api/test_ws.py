"""WebSocket /ws over a real server: auth, chat.stream, system.status, pushes, bad frames."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websocket
from flask import Flask

from bridge.config import DEFAULT_MODEL_ID
from bridge.models.store import ModelStore
from bridge.router import Router
from local_api import create_app, shutdown
from tests.support.app import LiveServer
from tests.support.fakes import LocalFake


@pytest.fixture
def fake() -> LocalFake:
    return LocalFake()


@pytest.fixture
def app(app_config: dict[str, Any], fake: LocalFake, tmp_path: Path) -> Iterator[Flask]:
    application = create_app(app_config, router=Router(fake), local=fake,
                             store=ModelStore(tmp_path / "models"))
    yield application
    shutdown(application)


def connect(server: LiveServer, token: str, *, in_query: bool = False) -> websocket.WebSocket:
    url = server.url.replace("http://", "ws://") + "/ws"
    if in_query:
        return websocket.create_connection(f"{url}?token={token}", timeout=10)
    return websocket.create_connection(url, header=[f"Authorization: Bearer {token}"], timeout=10)


def receive(ws: websocket.WebSocket) -> dict[str, Any]:
    frame = json.loads(ws.recv())
    assert frame["event"] == frame["type"]
    return dict(frame)


def until(ws: websocket.WebSocket, name: str, limit: int = 200) -> list[dict[str, Any]]:
    seen = []
    for _ in range(limit):
        frame = receive(ws)
        seen.append(frame)
        if frame["event"] == name:
            return seen
    raise AssertionError(f"no {name} frame in {limit}")


def test_refuses_without_token(live_server: LiveServer) -> None:
    url = live_server.url.replace("http://", "ws://") + "/ws"
    with pytest.raises(websocket.WebSocketBadStatusException) as caught:
        websocket.create_connection(url, timeout=5)
    assert caught.value.status_code == 401
    with pytest.raises(websocket.WebSocketBadStatusException):
        websocket.create_connection(url + "?token=forged", timeout=5)


def test_chat_stream_tokens_then_final(
    live_server: LiveServer, access_token: str, fake: LocalFake, http: httpx.Client
) -> None:
    fake.queue("streamed over a socket")
    ws = connect(live_server, access_token, in_query=True)
    try:
        ws.send(json.dumps({"event": "chat.stream",
                            "data": {"prompt": "hi", "model_id": DEFAULT_MODEL_ID}}))
        frames = []
        while True:
            frame = receive(ws)
            if frame["event"] == "chat.stream":
                frames.append(frame["data"])
                if frame["data"]["is_final"]:
                    break
    finally:
        ws.close()
    tokens = "".join(f["token"] for f in frames[:-1])
    final = frames[-1]
    assert tokens == final["completion"] == "streamed over a socket"
    assert final["usage"]["completion_tokens"] == 4 and final["backend"] == "local"
    stored = http.get(f"/api/conversations/{final['conversation_id']}",
                      headers={"Authorization": f"Bearer {access_token}"}).json()
    assert stored["conversation"]["messages"][-1]["content"] == "streamed over a socket"


def test_ft_type_key_and_chat_update_push(live_server: LiveServer, access_token: str) -> None:
    ws = connect(live_server, access_token)
    try:
        ws.send(json.dumps({"type": "chat.stream", "data": {"prompt": "hello"}}))
        frames = until(ws, "chat_update")
    finally:
        ws.close()
    update = frames[-1]["data"]
    assert update["conversation_id"].startswith("conv_")
    assert update["message"]["role"] == "assistant" and update["message"]["content"]


def test_bad_frames_get_errors_and_the_socket_stays(
    live_server: LiveServer, access_token: str
) -> None:
    ws = connect(live_server, access_token)
    try:
        for bad in ("not json", "[1,2]", json.dumps({"event": "launch.missiles", "data": {}}),
                    json.dumps({"event": "chat.stream", "data": {"prompt": ""}}),
                    json.dumps({"event": "chat.stream",
                                "data": {"prompt": "x", "model_id": "llama2-7b"}}),
                    json.dumps({"event": "system.status", "data": {"interval": -1}})):
            ws.send(bad)
            frame = receive(ws)
            assert frame["event"] == "error", bad
            assert frame["data"]["error"]["code"] in ("VALIDATION_ERROR", "MODEL_NOT_FOUND")
        ws.send(json.dumps({"event": "ping"}))
        assert receive(ws)["event"] == "pong"
    finally:
        ws.close()


def test_system_status_subscription(live_server: LiveServer, access_token: str) -> None:
    ws = connect(live_server, access_token)
    try:
        ws.send(json.dumps({"event": "system.status", "data": {"interval": 0.2}}))
        first, second = receive(ws), receive(ws)
        ws.send(json.dumps({"event": "system.status", "data": {"interval": 0}}))
    finally:
        ws.close()
    for frame in (first, second):
        assert frame["event"] == "system.status"
        resources = frame["data"]["resources"]
        assert 0 <= resources["cpu"] <= 100 and resources["memory"] > 0
        assert resources["gpu"] is None
        assert frame["data"]["status"]["backends"][0]["name"] == "local"


def test_model_status_pushed_during_load(
    live_server: LiveServer, access_token: str, http: httpx.Client
) -> None:
    ws = connect(live_server, access_token)
    try:
        ws.send(json.dumps({"event": "ping"}))
        assert receive(ws)["event"] == "pong"  # subscribed before the load starts
        http.post("/api/v1/models/load", headers={"Authorization": f"Bearer {access_token}"},
                  json={"model_id": DEFAULT_MODEL_ID})
        statuses = [receive(ws)["data"] for _ in range(2)]
    finally:
        ws.close()
    assert [s["status"] for s in statuses] == ["loading", "loaded"]
    assert statuses[-1]["progress"] == 1.0 and statuses[-1]["model_id"] == DEFAULT_MODEL_ID


def test_chat_ids_echoed_and_chat_cancel_stops_one_chat(
    live_server: LiveServer, access_token: str, fake: LocalFake
) -> None:
    fake.queue("one two three four five six", "alpha beta")
    fake.hang_after = 2
    ws = connect(live_server, access_token)
    try:
        ws.send(json.dumps({"event": "chat.stream", "id": "a", "data": {"prompt": "count"}}))
        first = [receive(ws), receive(ws)]
        assert [f["id"] for f in first] == ["a", "a"]
        assert [f["data"]["token"] for f in first] == ["one", " two"]
        assert fake.hanging.wait(10)
        ws.send(json.dumps({"event": "chat.stream", "id": "a", "data": {"prompt": "again"}}))
        duplicate = receive(ws)
        assert duplicate["event"] == "error" and duplicate["id"] == "a"
        assert duplicate["data"]["error"]["code"] == "VALIDATION_ERROR"
        ws.send(json.dumps({"event": "chat.cancel", "id": "nope"}))
        unknown = receive(ws)
        assert unknown["event"] == "error" and unknown["id"] == "nope"
        ws.send(json.dumps({"event": "chat.cancel", "id": "a"}))
        ws.send(json.dumps({"event": "ping"}))  # frames are read in order: the cancel is in
        assert receive(ws)["event"] == "pong"
        fake.release()
        cancelled = until(ws, "chat.cancelled")[-1]
        assert cancelled["id"] == "a" and cancelled["data"] == {"tokens": 2}
        fake.hang_after = None
        ws.send(json.dumps({"event": "chat.stream", "id": 7, "data": {"prompt": "greek"}}))
        frames = []
        while not (frames and frames[-1]["data"]["is_final"]):
            frame = receive(ws)
            if frame["event"] == "chat.stream":
                frames.append(frame)
    finally:
        ws.close()
    assert all(f["id"] == 7 for f in frames)
    assert frames[-1]["data"]["is_final"] and frames[-1]["data"]["completion"] == "alpha beta"
