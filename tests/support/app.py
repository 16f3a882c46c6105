"""Shared fixtures: the real app on real SQLite files, a test client, a real server on loopback."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import BaseWSGIServer

from bridge.serving import create_server
from local_api import create_app, shutdown


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def _shared_config(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Where a module asks for ``database_url`` (``usefixtures``), its apps use it."""
    if "database_url" in request.fixturenames:
        return {"database_url": request.getfixturevalue("database_url")}
    return {}


@pytest.fixture
def app_config(home: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
    return {"home": home, "prepare_model": False, **_shared_config(request)}


@pytest.fixture
def app(app_config: dict[str, Any]) -> Iterator[Flask]:
    application = create_app(app_config)
    application.config["TESTING"] = True
    yield application
    shutdown(application)


@pytest.fixture
def make_app(request: pytest.FixtureRequest) -> Iterator[Callable[..., Flask]]:
    """Build extra apps inside a test; each is shut down (threads, connections) at the end."""
    made: list[Flask] = []
    shared = _shared_config(request)

    def build(config: dict[str, Any] | None = None, **collaborators: Any) -> Flask:
        merged = {"prepare_model": False, **shared, **(config or {})}
        application = create_app(merged, **collaborators)
        made.append(application)
        return application

    yield build
    for application in made:
        shutdown(application)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


class Auth:
    """Register / log in users through the real endpoints."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def register(self, username: str = "alice", password: str = "correct horse") -> int:
        response = self.client.post(
            "/api/auth/register",
            json={"username": username, "email": f"{username}@example.org", "password": password},
        )
        assert response.status_code == 201, response.get_json()
        return int(response.get_json()["user_id"])

    def login(self, username: str = "alice", password: str = "correct horse") -> dict[str, Any]:
        response = self.client.post(
            "/api/v1/auth/login", json={"username": username, "password": password}
        )
        assert response.status_code == 200, response.get_json()
        return dict(response.get_json())

    def headers(self, username: str = "alice") -> dict[str, str]:
        """Register (if new) and log in; the bearer header of that user."""
        self.client.post(
            "/api/auth/register",
            json={
                "username": username,
                "email": f"{username}@example.org",
                "password": "correct horse",
            },
        )
        token = self.login(username)["access_token"]
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def auth(client: FlaskClient) -> Auth:
    return Auth(client)


class LiveServer:
    def __init__(self, app: Flask) -> None:
        self.server: BaseWSGIServer = create_server("127.0.0.1", 0, app)
        self.url = f"http://127.0.0.1:{self.server.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def live_server(app: Flask) -> Iterator[LiveServer]:
    with LiveServer(app) as server:
        yield server


@pytest.fixture
def http(live_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.url, timeout=30) as session:
        yield session


@pytest.fixture
def access_token(http: httpx.Client) -> str:
    """Alice, registered and logged in over real HTTP (``http``): her access token."""
    http.post("/api/auth/register",
              json={"username": "alice", "email": "a@example.org", "password": "longenough"})
    login = http.post("/api/auth/login", json={"username": "alice", "password": "longenough"})
    assert login.status_code == 200, login.text
    return str(login.json()["access_token"])


@pytest.fixture
def bearer(access_token: str) -> dict[str, str]:
    """The ``Authorization`` header of ``access_token``."""
    return {"Authorization": f"Bearer {access_token}"}
