"""bridge.Client() with no arguments: $BRIDGE_URL / $BRIDGE_API_KEY, else `bridge login`'s
stored key (one credentials story for the SDK, the widgets, the notebook and the CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from flask import Flask
from flask.testing import FlaskClient

from bridge import Client
from bridge.sdk.credentials import credentials_path
from tests.support.app import Auth


def _store_login(url: str, key: str) -> None:
    """What `bridge login` writes (local_api/cli/credentials.py)."""
    path = credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"default_url": url, "servers": {url: {"api_key": key}}}))


@pytest.fixture
def api_key(client: FlaskClient, auth: Auth) -> str:
    auth.register()
    token = auth.login()["access_token"]
    answer = client.post("/api/v1/auth/api-keys", json={"name": "nb"},
                         headers={"Authorization": f"Bearer {token}"})
    return str(answer.get_json()["key"])


@pytest.fixture(autouse=True)
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("BRIDGE_URL", raising=False)
    monkeypatch.delenv("BRIDGE_API_KEY", raising=False)


def test_client_uses_the_stored_login(app: Flask, api_key: str) -> None:
    _store_login("http://localhost:7000", api_key)
    with Client(transport=httpx.WSGITransport(app=app)) as client:
        assert client.base_url == "http://localhost:7000"
        assert client.user.profile()["username"] == "alice"


def test_environment_wins_over_the_stored_login(app: Flask, api_key: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    _store_login("http://localhost:7000", "cb_stale_key")
    monkeypatch.setenv("BRIDGE_URL", "http://localhost:7001/api/v1")
    monkeypatch.setenv("BRIDGE_API_KEY", api_key)
    with Client(transport=httpx.WSGITransport(app=app)) as client:
        assert client.base_url == "http://localhost:7001"
        assert client.api_key == api_key
        assert client.user.profile()["username"] == "alice"


def test_a_url_given_picks_that_services_stored_key(app: Flask, api_key: str) -> None:
    _store_login("http://localhost:7000", api_key)
    with Client("http://localhost:7000", transport=httpx.WSGITransport(app=app)) as client:
        assert client.api_key == api_key
    with Client("http://elsewhere:5000") as other:
        assert other.api_key is None


def test_no_login_and_no_environment_is_anonymous_on_the_default_url() -> None:
    with Client() as client:
        assert client.base_url == "http://127.0.0.1:5000"
        assert client.api_key is None
