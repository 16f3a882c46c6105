"""Two `bridge serve` processes (gunicorn) on one real PostgreSQL and one real Redis, requests
alternating between them: what one instance did, the other knows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import websocket

from bridge.config import DEFAULT_MODEL_ID
from bridge.models.store import ModelStore
from tests.support.live_process import serve

pytestmark = pytest.mark.model
API = "/api/v1"
PASSWORD = "correct horse"


def _login(url: str, username: str) -> str:
    httpx.post(f"{url}/api/auth/register", timeout=30, json={
        "username": username, "email": f"{username}@example.org", "password": PASSWORD})
    return str(httpx.post(f"{url}{API}/auth/login", timeout=30, json={
        "username": username, "password": PASSWORD}).json()["access_token"])


def _until(ws: websocket.WebSocket, name: str) -> dict[str, Any]:
    for _ in range(200):
        frame = json.loads(ws.recv())
        if frame["event"] == name:
            return dict(frame)
    raise AssertionError(f"no {name} frame")


def test_two_instances_share_accounts_limits_cache_and_pushes(
        tmp_path: Path, postgres_url: str, redis_url: str, model_store: ModelStore) -> None:
    env = {"DATABASE_URL": postgres_url, "BRIDGE_REDIS_URL": redis_url,
           "BRIDGE_JWT_SECRET": "j" * 40, "BRIDGE_SECRET_KEY": "s" * 40,
           "BRIDGE_MODELS_HOME": str(model_store.root), "BRIDGE_LIMIT_FREE": "6/minute",
           "BRIDGE_KEEP_ALIVE": "300"}
    with serve(tmp_path / "a", env=env) as (_a, a), serve(tmp_path / "b", env=env) as (_b, b):
        admin = {"Authorization": f"Bearer {_login(a, 'admin')}"}  # the first: admin

        # a /ws client on B sees the chat_update of a generation served by A
        ws = websocket.create_connection(b.replace("http://", "ws://") + "/ws", timeout=60,
                                         header=[f"Authorization: {admin['Authorization']}"])
        try:
            body = {"prompt": "Name a colour.", "model_id": DEFAULT_MODEL_ID,
                    "parameters": {"max_tokens": 3, "temperature": 0}}
            first = httpx.post(f"{a}{API}/chat/completion", headers=admin, json=body,
                               timeout=120)
            assert first.status_code == 200, first.text
            update = _until(ws, "chat_update")
            assert update["data"]["conversation_id"] == first.json()["conversation_id"]
        finally:
            ws.close()
        # the deterministic answer A computed is a cache hit on B
        second = httpx.post(f"{b}{API}/chat/completion", headers=admin, json=body, timeout=120)
        assert second.headers["X-Cache"] == "HIT"
        assert second.json()["completion"] == first.json()["completion"]

        # one rate limit for both: 6 a minute in all
        bob = {"Authorization": f"Bearer {_login(b, 'bob')}"}
        codes = [httpx.get(f"{(a, b)[i % 2]}{API}/auth/session", headers=bob,
                           timeout=30).status_code for i in range(7)]
        assert codes == [200] * 6 + [429]

        # a token revoked on A is refused by B
        carol = {"Authorization": f"Bearer {_login(a, 'carol')}"}
        assert httpx.get(f"{b}{API}/auth/session", headers=carol, timeout=30).status_code == 200
        assert httpx.post(f"{a}{API}/auth/logout", headers=carol, json={},
                          timeout=30).status_code in (200, 204)
        assert httpx.get(f"{b}{API}/auth/session", headers=carol, timeout=30).status_code == 401
