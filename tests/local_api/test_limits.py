"""Rate limits per tier and per address, with the headers of both documents."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.support.app import Auth, LiveServer

# on SQLite and on a real PostgreSQL (tests/support/servers.py)
pytestmark = pytest.mark.usefixtures("database_url")


def make(make_app: Callable[..., Flask], home: Path, **limits: str) -> FlaskClient:
    config = {
        "home": home,
        "anonymous_limit": "3/minute",
        "tier_limits": {"free": "4/minute", "pro": "6/minute", "enterprise": "8/minute"},
    }
    config.update(limits)
    return make_app(config).test_client()


def test_headers_on_every_response(client: FlaskClient) -> None:
    response = client.get("/api/auth/session")
    assert response.headers["X-RateLimit-Limit"] == "100"
    assert int(response.headers["X-RateLimit-Remaining"]) == 99
    assert int(response.headers["X-RateLimit-Reset"]) > 1_600_000_000
    assert "Retry-After" not in response.headers


def test_anonymous_limit_by_address(home: Path, make_app: Callable[..., Flask]) -> None:
    client = make(make_app, home)
    codes = [client.get("/api/auth/session").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    response = client.get("/api/auth/session")
    error = response.get_json()["error"]
    assert error["code"] == "RATE_LIMIT_EXCEEDED"
    assert error["details"]["limit"] == 3
    assert error["details"]["reset_in"].startswith("PT")
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert response.headers["X-RateLimit-Remaining"] == "0"
    # A different address has its own budget.
    other = client.get("/api/auth/session", environ_base={"REMOTE_ADDR": "127.0.0.2"})
    assert other.status_code == 200


def test_limits_follow_the_user_tier(home: Path, make_app: Callable[..., Flask]) -> None:
    client = make(make_app, home, anonymous_limit="1000/minute")
    auth = Auth(client)
    admin = auth.headers("root")
    bob = auth.headers("bob")
    # bob (free, 4/min): the budget is his, whichever address he calls from.
    codes = [
        client.get(
            "/api/user/profile", headers=bob, environ_base={"REMOTE_ADDR": f"10.0.0.{i}"}
        ).status_code
        for i in range(5)
    ]
    assert codes == [200, 200, 200, 200, 429]
    users = client.get("/api/v1/admin/users", headers=admin).get_json()["users"]
    bob_id = next(u["id"] for u in users if u["username"] == "bob")
    client.patch(f"/api/v1/admin/users/{bob_id}", headers=admin, json={"rate_limit": "50/minute"})
    response = client.get("/api/user/profile", headers=bob)
    assert response.status_code == 200 and response.headers["X-RateLimit-Limit"] == "50"


def test_health_is_not_limited(home: Path, make_app: Callable[..., Flask]) -> None:
    client = make(make_app, home, anonymous_limit="1/minute")
    assert all(client.get("/healthz").status_code == 200 for _ in range(5))


def test_limit_over_real_http(home: Path, make_app: Callable[..., Flask]) -> None:
    app = make_app({"home": home, "anonymous_limit": "2/minute"})
    with LiveServer(app) as server, httpx.Client(base_url=server.url) as http:
        answers = [http.get("/api/v1/auth/session") for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[-1].json()["error"]["code"] == "RATE_LIMIT_EXCEEDED"
    assert "Retry-After" in answers[-1].headers
