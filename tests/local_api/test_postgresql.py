"""PostgreSQL as a first-class database, on a real server: migrations, the races READ COMMITTED
opens (one username registered twice, the first admin, refresh-token rotation), backups."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import text

from local_api.storage.migrations import LATEST_VERSION
from tests.support.app import LiveServer

API = "/api/v1"


def _race(n: int, call: Callable[[int], int]) -> list[int]:
    """Run ``call(i)`` in n threads released together; their results."""
    barrier = threading.Barrier(n)
    results: list[int] = [0] * n

    def run(i: int) -> None:
        barrier.wait()
        results[i] = call(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_two_instances_migrate_one_database_at_once(
        postgres_url: str, make_app: Callable[..., Flask], tmp_path: Path) -> None:
    apps: list[Flask] = []
    _race(2, lambda i: apps.append(
        make_app({"home": tmp_path / f"h{i}", "database_url": postgres_url})) or 0)
    assert len(apps) == 2
    with apps[0].extensions["db"].connect() as conn:
        assert conn.dialect.driver == "psycopg"
        versions = conn.execute(text("SELECT version FROM schema_version ORDER BY 1")).scalars()
        assert list(versions) == list(range(1, LATEST_VERSION + 1))
        kind = conn.execute(text(
            "SELECT data_type FROM information_schema.columns "
            "WHERE table_name = 'download_jobs' AND column_name = 'bytes_done'")).scalar_one()
        assert kind == "bigint"  # a 7 GB model's byte count fits


def _register(url: str, username: str) -> int:
    import httpx

    body = {"username": username, "email": f"{username}@example.org",
            "password": "correct horse"}
    return httpx.post(f"{url}/api/auth/register", json=body, timeout=60).status_code


def test_one_username_registered_concurrently_exists_once(
        postgres_url: str, make_app: Callable[..., Flask], tmp_path: Path) -> None:
    app = make_app({"home": tmp_path / "h", "database_url": postgres_url,
                    "ratelimit_enabled": False})
    with LiveServer(app) as server:
        others = _race(6, lambda i: _register(server.url, f"user{i}"))  # on an empty table
        assert others == [201] * 6
        codes = _race(6, lambda i: _register(server.url, "Bob" if i % 2 else "bob"))
        assert sorted(codes) == [201] + [409] * 5
    with app.extensions["db"].connect() as conn:
        roles = conn.execute(text("SELECT role FROM users")).scalars().all()
    assert sorted(roles) == ["admin"] + ["user"] * 6  # exactly one first account


def test_a_refresh_token_spent_concurrently_rotates_once(
        postgres_url: str, make_app: Callable[..., Flask], tmp_path: Path) -> None:
    import httpx

    app = make_app({"home": tmp_path / "h", "database_url": postgres_url,
                    "ratelimit_enabled": False})
    with LiveServer(app) as server:
        assert _register(server.url, "carol") == 201
        login = httpx.post(f"{server.url}{API}/auth/login", timeout=60,
                           json={"username": "carol", "password": "correct horse"}).json()

        def refresh(_i: int) -> int:
            return httpx.post(f"{server.url}{API}/auth/refresh", timeout=60,
                              json={"refresh_token": login["refresh_token"]}).status_code

        codes = _race(6, refresh)
    assert sorted(codes) == [200] + [401] * 5
    with app.extensions["db"].connect() as conn:
        statuses = conn.execute(text("SELECT status FROM refresh_tokens")).scalars().all()
    assert "active" not in statuses or statuses.count("active") <= 1


def test_backups_answer_not_supported_naming_pg_dump(
        postgres_url: str, make_app: Callable[..., Flask], tmp_path: Path) -> None:
    app = make_app({"home": tmp_path / "h", "database_url": postgres_url})
    client = app.test_client()
    body: dict[str, Any] = {"username": "admin", "email": "a@example.org",
                            "password": "correct horse"}
    assert client.post("/api/auth/register", json=body).status_code == 201
    login = {"username": "admin", "password": "correct horse"}
    token = client.post(f"{API}/auth/login", json=login).get_json()["access_token"]
    response = client.post(f"{API}/db/backup", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 501
    error = response.get_json()["error"]
    assert error["code"] == "NOT_SUPPORTED" and error["details"]["tool"] == "pg_dump"
