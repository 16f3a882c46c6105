"""Storage: real SQLite files, WAL and foreign keys, recorded migrations, configurable home."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from local_api import create_app
from local_api.migrations import LATEST_VERSION


def test_sqlite_file_with_wal_and_migrations(app, home: Path) -> None:  # type: ignore[no-untyped-def]
    db = home / "bridge.db"
    assert db.exists()
    with app.extensions["db"].connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    raw = sqlite3.connect(db)
    versions = [r[0] for r in raw.execute("SELECT version FROM schema_version ORDER BY version")]
    raw.close()
    assert versions == list(range(1, LATEST_VERSION + 1))


def test_migrations_are_idempotent_across_restarts(home: Path) -> None:
    for _ in range(2):
        app = create_app({"home": home})
        app.extensions["db"].dispose()
    raw = sqlite3.connect(home / "bridge.db")
    count = raw.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0]
    raw.close()
    assert count == LATEST_VERSION


def test_database_url_overrides_home(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.db"
    app = create_app({"home": tmp_path / "home", "database_url": f"sqlite:///{target}"})
    app.test_client().post(
        "/api/auth/register",
        json={"username": "alice", "email": "a@example.org", "password": "longenough"},
    )
    app.extensions["db"].dispose()
    raw = sqlite3.connect(target)
    assert raw.execute("SELECT username FROM users").fetchall() == [("alice",)]
    raw.close()


def test_home_from_environment(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("BRIDGE_HOME", str(tmp_path / "from-env"))
    app = create_app()
    assert (tmp_path / "from-env" / "bridge.db").exists()
    app.extensions["db"].dispose()
