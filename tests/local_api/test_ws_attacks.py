"""A second account against /ws on a live service: limits, revoked credentials, caps, big frames."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import websocket
from flask import Flask

from bridge.config import DEFAULT_MODEL_ID
from bridge.models.store import ModelStore
from bridge.router import Router
from tests.support.app import LiveServer
from tests.support.fakes import LocalFake

PASSWORD = "longenough"


@dataclass
class Service:
    url: str
    http: httpx.Client

    def login(self, username: str) -> dict[str, Any]:
        self.http.post("/api/auth/register", json={
            "username": username, "email": f"{username}@example.org", "password": PASSWORD})
        answer = self.http.post("/api/auth/login",
                                json={"username": username, "password": PASSWORD})
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def socket(self, credential: str) -> websocket.WebSocket:
        return websocket.create_connection(
            self.url.replace("http://", "ws://") + "/ws",
            header=[f"Authorization: Bearer {credential}"], timeout=10)


@pytest.fixture
def start(make_app: Callable[..., Flask], home: Path,
          tmp_path: Path) -> Iterator[Callable[..., Service]]:
    servers: list[LiveServer] = []
    clients: list[httpx.Client] = []

    def build(**config: Any) -> Service:
        fake = LocalFake()
        app = make_app({"home": home, **config}, router=Router(fake), local=fake,
                       store=ModelStore(tmp_path / "models"))
        server = LiveServer(app).__enter__()
        servers.append(server)
        clients.append(httpx.Client(base_url=server.url, timeout=30))
        return Service(server.url, clients[-1])

    yield build
    for client in clients:
        client.close()
    for server in servers:
        server.__exit__()


def chat(ws: websocket.WebSocket, chat_id: int) -> dict[str, Any]:
    """Ask one chat.stream; the frame that ends it (final chat.stream or error)."""
    ws.send(json.dumps({"event": "chat.stream", "id": chat_id,
                        "data": {"prompt": f"question {chat_id}", "model_id": DEFAULT_MODEL_ID}}))
    for _ in range(200):
        frame = json.loads(ws.recv())
        if frame["event"] == "error" or frame["data"].get("is_final"):
            return dict(frame)
    raise AssertionError("no end of chat")


def test_ws_generations_count_against_the_callers_limits(start: Callable[..., Service]) -> None:
    service = start(tier_limits={"free": "5/minute", "pro": "5/minute",
                                 "enterprise": "5/minute"})
    service.login("admin")
    token = service.login("alice")["access_token"]
    ws = service.socket(token)  # the handshake is one request of the five
    try:
        ends = [chat(ws, n) for n in range(6)]
    finally:
        ws.shutdown()
    assert [e["event"] for e in ends] == ["chat.stream"] * 4 + ["error"] * 2
    assert ends[-1]["data"]["error"]["code"] == "RATE_LIMIT_EXCEEDED"
    assert ends[-1]["data"]["error"]["details"]["retry_after"] >= 1
    session = service.http.get("/api/v1/auth/session",
                               headers={"Authorization": f"Bearer {token}"})
    assert session.status_code == 429  # one budget across HTTP and the socket


def _closed_within(ws: websocket.WebSocket, seconds: float) -> list[dict[str, Any]]:
    """Frames until the service closes the socket; fails if it is still open after ``seconds``."""
    frames = []
    deadline = time.monotonic() + seconds
    ws.settimeout(seconds)
    while time.monotonic() < deadline:
        try:
            opcode, data = ws.recv_data(control_frame=True)
        except (websocket.WebSocketConnectionClosedException, ConnectionError):
            return frames
        except websocket.WebSocketTimeoutException:
            break
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            frames.append({"close": int.from_bytes(data[:2], "big")})
            return frames
        if opcode == websocket.ABNF.OPCODE_TEXT:
            frames.append(json.loads(data))
    raise AssertionError(f"socket still open after {seconds} s: {frames}")


REVOCATIONS = ("disabled", "logout", "api_key", "refresh_reuse")


@pytest.mark.parametrize("how", REVOCATIONS)
def test_revoked_credential_ends_open_socket(start: Callable[..., Service], how: str) -> None:
    service = start()
    admin = service.login("admin")
    alice = service.login("alice")
    bearer = {"Authorization": f"Bearer {alice['access_token']}"}
    credential = alice["access_token"]
    if how == "api_key":
        key = service.http.post("/api/v1/auth/api-keys", headers=bearer, json={"name": "k"})
        credential = key.json()["key"]
    ws = service.socket(credential)
    assert chat(ws, 1)["event"] == "chat.stream"
    if how == "disabled":
        changed = service.http.patch(
            "/api/v1/admin/users/2", json={"disabled": True},
            headers={"Authorization": f"Bearer {admin['access_token']}"})
        assert changed.status_code == 200, changed.text
    elif how == "logout":
        out = service.http.post("/api/v1/auth/logout", headers=bearer, json={})
        assert out.status_code == 200, out.text
    elif how == "api_key":
        gone = service.http.delete(f"/api/v1/auth/api-keys/{key.json()['id']}", headers=bearer)
        assert gone.status_code == 200, gone.text
    else:  # a thief refreshes first; alice's own refresh is then a reuse
        stolen = {"refresh_token": alice["refresh_token"]}
        assert service.http.post("/api/v1/auth/refresh", json=stolen).status_code == 200
        assert service.http.post("/api/v1/auth/refresh", json=stolen).status_code == 401
    started = time.monotonic()
    try:
        frames = _closed_within(ws, 6.0)
    finally:
        ws.shutdown()
    assert time.monotonic() - started < 6.0
    errors = [f for f in frames if f.get("event") == "error"]
    assert errors and errors[0]["data"]["error"]["code"] == "UNAUTHORIZED", frames
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        service.socket(credential)
    assert refused.value.status_code == 401


def test_refresh_reuse_stops_access_tokens_of_the_family(start: Callable[..., Service]) -> None:
    service = start()
    alice = service.login("alice")
    stolen = {"refresh_token": alice["refresh_token"]}
    thief = service.http.post("/api/v1/auth/refresh", json=stolen).json()
    thief_bearer = {"Authorization": f"Bearer {thief['access_token']}"}
    assert service.http.get("/api/v1/auth/session", headers=thief_bearer).json()["username"] \
        == "alice"
    assert service.http.post("/api/v1/auth/refresh", json=stolen).status_code == 401  # reuse
    for token in (thief["access_token"], alice["access_token"]):
        answer = service.http.get("/api/v1/user/profile",
                                  headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 401, answer.text
    fresh = service.login("alice")  # a new login starts a new family and works
    assert service.http.get("/api/v1/user/profile", headers={
        "Authorization": f"Bearer {fresh['access_token']}"}).status_code == 200


def test_oversized_frame_closes_with_1009(start: Callable[..., Service]) -> None:
    service = start(max_body_bytes=64 * 1024)
    ws = service.socket(service.login("alice")["access_token"])
    big = json.dumps({"event": "chat.stream", "data": {"prompt": "x" * (1024 * 1024)}})
    try:
        ws.send(big)
        frames = _closed_within(ws, 5.0)
    finally:
        ws.shutdown()
    assert {"close": 1009} in frames, frames


def _refused(service: Service, token: str) -> dict[str, Any]:
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        service.socket(token)
    assert refused.value.status_code == 429
    assert int(refused.value.resp_headers["retry-after"]) >= 5
    return dict(json.loads(refused.value.resp_body)["error"])


def test_socket_caps_per_account_and_per_service(start: Callable[..., Service]) -> None:
    service = start(ws_max_per_user=2, ws_max_sockets=3)
    alice = service.login("alice")["access_token"]
    bob = service.login("bob")["access_token"]
    held = [service.socket(alice), service.socket(alice)]
    try:
        error = _refused(service, alice)
        assert error["code"] == "RATE_LIMIT_EXCEEDED"
        assert error["details"]["scope"] == "per_user"
        held.append(service.socket(bob))
        assert _refused(service, bob)["details"]["scope"] == "service"
        held.pop(0).shutdown()  # a closed socket gives its place back
        deadline = time.monotonic() + 5
        while True:
            try:
                held.append(service.socket(bob))
                break
            except websocket.WebSocketBadStatusException:
                assert time.monotonic() < deadline, "the place of a closed socket never came back"
                time.sleep(0.2)
    finally:
        for ws in held:
            ws.shutdown()


def test_idle_socket_is_closed(start: Callable[..., Service]) -> None:
    service = start(ws_idle_timeout=1)
    ws = service.socket(service.login("alice")["access_token"])
    try:
        assert _closed_within(ws, 4.0) == [{"close": 1008}]
    finally:
        ws.shutdown()
