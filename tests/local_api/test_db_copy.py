"""`bridge db copy --to postgresql://...`: an existing SQLite database moved into a real, empty
PostgreSQL one; counts checked, a non-empty target refused, the service then runs on it."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import text

from local_api import shutdown
from local_api.cli.main import main

API = "/api/v1"
PASSWORD = "correct horse"


def _register(app: Flask, username: str) -> int:
    body = {"username": username, "email": f"{username}@example.org", "password": PASSWORD}
    response = app.test_client().post("/api/auth/register", json=body)
    assert response.status_code == 201, response.get_json()
    return int(response.get_json()["user_id"])


def test_copy_moves_every_row_and_refuses_a_non_empty_target(
        postgres_url: str, make_app: Callable[..., Flask], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    shared = {"home": home, "jwt_secret": "j" * 40}
    before = make_app(shared)
    _register(before, "alice")
    _register(before, "bob")
    client = before.test_client()
    token = client.post(f"{API}/auth/login", json={"username": "alice", "password": PASSWORD}
                        ).get_json()["access_token"]
    created = client.post(f"{API}/auth/api-keys", headers={"Authorization": f"Bearer {token}"},
                          json={"name": "ci"})
    assert created.status_code == 201
    api_key = created.get_json()["key"]
    shutdown(before)  # the service is stopped for the copy

    not_utc = postgres_url + "?options=-c%20timezone%3DAmerica/New_York"  # a server's zone
    assert main(["db", "copy", "--to", not_utc, "--home", str(home)]) == 0
    out = capsys.readouterr().out
    assert "  users: 2" in out and "  api_keys: 1" in out and "  audit_log: " in out

    assert main(["db", "copy", "--to", postgres_url, "--home", str(home)]) != 0
    assert "not empty" in capsys.readouterr().err

    after = make_app({**shared, "database_url": postgres_url})  # same home: same secret.key
    client = after.test_client()
    assert client.get(f"{API}/auth/session",
                      headers={"Authorization": f"Bearer {api_key}"}).status_code == 200
    assert client.post(f"{API}/auth/login",
                       json={"username": "bob", "password": PASSWORD}).status_code == 200
    assert _register(after, "carol") == 3  # the id sequence continues after the copied rows
    with sqlite3.connect(home / "bridge.db") as raw:
        written = raw.execute("SELECT created_at FROM users WHERE username = 'alice'"
                              ).fetchone()[0]
    with after.extensions["db"].connect() as conn:
        moved = conn.execute(text("SELECT created_at FROM users WHERE username = 'alice'")
                             ).scalar_one()
    assert moved == datetime.fromisoformat(written).replace(tzinfo=UTC)  # the same instant


def test_copy_wants_a_postgresql_target(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "copy", "--to", "sqlite:///x.db", "--home", str(tmp_path)]) != 0
    assert "postgresql://" in capsys.readouterr().err
