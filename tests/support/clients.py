"""Real client libraries pointed at a live app: an API key made through the real endpoints."""

from __future__ import annotations

import httpx
import openai


def api_key(http: httpx.Client, username: str = "alice") -> str:
    """Register and log in through the real endpoints; a new API key."""
    who = {"username": username, "password": "correct horse"}
    http.post("/api/auth/register", json={**who, "email": f"{username}@example.org"})
    token = http.post("/api/auth/login", json=who).json()["access_token"]
    created = http.post("/api/auth/api-keys", json={"name": "notebook"},
                        headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    assert created.status_code == 201, created.text
    return str(created.json()["key"])


def openai_client(url: str, key: str, timeout: float = 30) -> openai.OpenAI:
    """The ``openai`` SDK on this service's /v1 (a loaded 2-core machine decodes the real
    model at a few tokens a second: real-model tests pass a long ``timeout``)."""
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=timeout)
