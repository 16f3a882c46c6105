"""Restore the live SQLite database from a backup: verify, save the present, swap atomically.

The swap is SQLite's backup API run *into* the live database: one write transaction, so
every other connection sees either the old database or the restored one, never a mix, and
the service keeps answering (requests wait on the lock for the moment the copy takes).
"""

from __future__ import annotations

import logging
import secrets
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from bridge.models.store import sha256_file
from local_api.backups import store
from local_api.backups.store import Unusable
from local_api.storage.migrations import migrate
from local_api.timeutil import utcnow

log = logging.getLogger("compute_bridge.backups")

# Revocations made after the backup was taken must survive its restore: a token or key that
# was revoked stays revoked (the rest of the data goes back in time, security does not).
_CARRY_REVOCATIONS = (
    "INSERT OR IGNORE INTO main.revoked_tokens (jti, expires_at) "
    "SELECT jti, expires_at FROM live.revoked_tokens",
    "UPDATE main.refresh_tokens SET status = (SELECT l.status FROM live.refresh_tokens l "
    "WHERE l.jti = main.refresh_tokens.jti) WHERE jti IN "
    "(SELECT jti FROM live.refresh_tokens WHERE status != 'active')",
    "UPDATE main.api_keys SET revoked_at = (SELECT l.revoked_at FROM live.api_keys l "
    "WHERE l.id = main.api_keys.id) WHERE revoked_at IS NULL AND id IN "
    "(SELECT id FROM live.api_keys WHERE revoked_at IS NOT NULL)",
)


def _tables(conn: sqlite3.Connection, schema: str) -> set[str]:
    query = f"SELECT name FROM {schema}.sqlite_master WHERE type='table'"
    return {row[0] for row in conn.execute(query)}


def _carry_revocations(staging: Path, current: Path) -> None:
    with closing(sqlite3.connect(staging)) as conn:
        conn.execute("ATTACH DATABASE ? AS live", (str(current),))
        both = _tables(conn, "main") & _tables(conn, "live")
        with conn:
            for statement in _CARRY_REVOCATIONS:
                table = statement.split("main.", 1)[1].split(" ", 1)[0]
                if table in both:
                    conn.execute(statement)
        conn.execute("DETACH DATABASE live")


def _match_page_size(staging: Path, live: Path) -> None:
    """The backup API refuses to write into a WAL database with another page size."""
    with closing(sqlite3.connect(live, timeout=30)) as conn:
        size = conn.execute("PRAGMA page_size").fetchone()[0]
    with closing(sqlite3.connect(staging)) as conn:
        if conn.execute("PRAGMA page_size").fetchone()[0] != size:
            conn.execute("PRAGMA journal_mode=DELETE")
            conn.execute(f"PRAGMA page_size={int(size)}")
            conn.execute("VACUUM")


def _swap(staging: Path, live: Path) -> None:
    with closing(sqlite3.connect(staging)) as src:
        with closing(sqlite3.connect(live, timeout=30)) as dst:
            src.backup(dst)


def restore(
    engine: Engine,
    live: Path,
    directory: Path,
    backup_id: str,
    *,
    created_by: int | None = None,
) -> dict[str, Any]:
    """Verify ``backup_id``, back up the live database, then swap the backup in; a summary."""
    manifest = store.find(directory, backup_id)
    source = store.data_file(directory, backup_id)
    staging = directory / f".restore-{backup_id}-{secrets.token_hex(4)}.partial"
    with store.lock(directory, exclusive=True):
        try:
            # Work on a private copy: what is verified is exactly what gets swapped in.
            shutil.copyfile(source, staging)
            if sha256_file(staging) != manifest["sha256"]:
                raise Unusable(backup_id, "checksum_mismatch",
                               "The backup file does not match its recorded sha256 "
                               "(truncated or altered since it was written)")
            version = store.inspect(staging, backup_id)
            safety = store.create(live, directory, kind="pre-restore",
                                         created_by=created_by, retention=0)
            _carry_revocations(staging, store.data_file(directory, safety["id"]))
            _match_page_size(staging, live)
            _swap(staging, live)
        finally:
            store.remove_files(staging)
        engine.dispose()  # pooled connections reopen on the restored file
        with engine.begin() as conn:
            migrated = migrate(conn)
    log.warning("database restored from backup %s (safety backup %s, schema %d -> %d)",
                backup_id, safety["id"], version, migrated)
    return {
        "status": "restored",
        "restored_at": utcnow(),
        "backup_id": backup_id,
        "safety_backup_id": safety["id"],
        "schema_version": migrated,
    }
