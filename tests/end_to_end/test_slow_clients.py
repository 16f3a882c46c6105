"""One account's idle sockets plus 200 half-open connections against `bridge serve` (gunicorn):
the service keeps answering everyone else. Loopback only, bounded in count and time."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websocket

from tests.support.live_process import serve

THREADS = 8  # small on purpose: the bounds must hold however few threads there are
HALF_OPEN = 200
HEADER_TIMEOUT = 3


@pytest.fixture
def service(tmp_path: Path) -> Iterator[str]:
    env = {"BRIDGE_HEADER_TIMEOUT": str(HEADER_TIMEOUT), "BRIDGE_LIMIT_FREE": "1000/minute"}
    with serve(tmp_path / "home", "--threads", str(THREADS), env=env) as (_process, url):
        yield url


def login(http: httpx.Client, username: str) -> str:
    http.post("/api/auth/register", json={"username": username, "password": "longenough",
                                          "email": f"{username}@example.org"})
    answer = http.post("/api/auth/login", json={"username": username, "password": "longenough"})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def half_open(url: str, count: int) -> list[socket.socket]:
    """Connections that never finish a request head: half say nothing, half trickle a header."""
    host, port = url.removeprefix("http://").split(":")
    held = []
    for n in range(count):
        conn = socket.create_connection((host, int(port)), timeout=5)
        if n % 2:
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a")
        held.append(conn)
    return held


def timed(call: object) -> tuple[float, httpx.Response]:
    started = time.monotonic()
    response = call()  # type: ignore[operator]
    return time.monotonic() - started, response


def test_idle_sockets_and_half_open_connections_leave_others_served(service: str) -> None:
    ws_url = service.replace("http://", "ws://") + "/ws"
    with httpx.Client(base_url=service, timeout=10) as http:
        mallory, bob = login(http, "mallory"), login(http, "bob")
        sockets: list[websocket.WebSocket] = []
        refused = None
        try:
            for _ in range(THREADS * 2):  # as many as the account may hold, and then some
                try:
                    sockets.append(websocket.create_connection(
                        ws_url, header=[f"Authorization: Bearer {mallory}"], timeout=5))
                except websocket.WebSocketBadStatusException as exc:
                    refused = exc
                    break
            assert refused is not None and refused.status_code == 429
            assert b"RATE_LIMIT_EXCEEDED" in refused.resp_body
            assert len(sockets) < THREADS  # threads are kept for HTTP
            stalled = half_open(service, HALF_OPEN)
            try:
                time.sleep(0.5)
                with httpx.Client(base_url=service, timeout=10) as fresh:  # new connections
                    took, health = timed(lambda: fresh.get("/healthz"))
                    assert health.status_code == 200 and took < 1.0, took
                    took, profile = timed(lambda: fresh.get(
                        "/api/v1/user/profile", headers={"Authorization": f"Bearer {bob}"}))
                    assert profile.status_code == 200, profile.text
                    assert took < 1.0, took
                # Past the header timeout the service has closed the stalled connections.
                time.sleep(HEADER_TIMEOUT + 2)
                stalled[1].settimeout(2)
                assert stalled[1].recv(1) == b""
                stalled[0].settimeout(2)
                assert stalled[0].recv(1) == b""
            finally:
                for conn in stalled:
                    conn.close()
        finally:
            for ws in sockets:
                ws.shutdown()
