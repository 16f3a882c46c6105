"""Storage: real SQLite files, WAL and foreign keys, recorded migrations, configurable home."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from local_api.storage.migrations import LATEST_VERSION


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


def test_migrations_are_idempotent_across_restarts(home: Path, make_app) -> None:  # type: ignore[no-untyped-def]
    for _ in range(2):
        make_app({"home": home})
    raw = sqlite3.connect(home / "bridge.db")
    count = raw.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0]
    raw.close()
    assert count == LATEST_VERSION


def test_database_url_overrides_home(tmp_path: Path, make_app) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "elsewhere.db"
    app = make_app({"home": tmp_path / "home", "database_url": f"sqlite:///{target}"})
    app.test_client().post(
        "/api/auth/register",
        json={"username": "alice", "email": "a@example.org", "password": "longenough"},
    )
    raw = sqlite3.connect(target)
    assert raw.execute("SELECT username FROM users").fetchall() == [("alice",)]
    raw.close()


def test_home_from_environment(tmp_path: Path, monkeypatch, make_app) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("BRIDGE_HOME", str(tmp_path / "from-env"))
    make_app()
    assert (tmp_path / "from-env" / "bridge.db").exists()


def test_sqlite_synchronous_is_configurable(home: Path, make_app) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from bridge.errors import ValidationError

    for setting, expected in (("NORMAL", 1), ("full", 2)):
        app = make_app({"home": home, "sqlite_synchronous": setting})
        with app.extensions["db"].connect() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == expected
    with pytest.raises(ValidationError, match="NORMAL or FULL"):
        make_app({"home": home, "sqlite_synchronous": "OFF"})
