"""Schema migrations: a plain ordered list, applied on start inside one transaction each."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, inspect, select, text

from local_api.storage import schema
from local_api.timeutil import utcnow

Migration = tuple[int, str, Callable[[Connection], None]]


def _create(*tables: object) -> Callable[[Connection], None]:
    def run(conn: Connection) -> None:
        schema.metadata.create_all(conn, tables=list(tables))  # type: ignore[arg-type]

    return run


def _download_leases(conn: Connection) -> None:
    """Byte counts past 2 GiB on PostgreSQL (its INTEGER is 32-bit; SQLite's is 64) and the
    lease of the instance that runs each download job."""
    if conn.dialect.name == "postgresql":
        for name in ("bytes_done", "bytes_total", "speed_bps"):
            conn.execute(text(f"ALTER TABLE download_jobs ALTER COLUMN {name} TYPE BIGINT"))
    have = {c["name"] for c in inspect(conn).get_columns("download_jobs")}
    for name in ("claimed_by", "lease_expires_at"):  # a database made at version 7+ has them
        if name not in have:
            column = schema.download_jobs.c[name]
            kind = column.type.compile(dialect=conn.dialect)
            conn.execute(text(f"ALTER TABLE download_jobs ADD COLUMN {name} {kind}"))


def _shared_duties(conn: Connection) -> None:
    """The leases table, and when each attached worker last got a request on any instance."""
    schema.metadata.create_all(conn, tables=[schema.leases])
    if "used_at" not in {c["name"] for c in inspect(conn).get_columns("workers")}:
        kind = schema.workers.c.used_at.type.compile(dialect=conn.dialect)
        conn.execute(text(f"ALTER TABLE workers ADD COLUMN used_at {kind}"))


MIGRATIONS: list[Migration] = [
    (
        1,
        "accounts, tokens, API keys, audit log",
        _create(
            schema.users,
            schema.refresh_tokens,
            schema.revoked_tokens,
            schema.api_keys,
            schema.audit_log,
        ),
    ),
    (2, "conversations and messages", _create(schema.conversations, schema.messages)),
    (3, "model download jobs", _create(schema.download_jobs)),
    (4, "attached workers, Google accounts", _create(schema.workers, schema.google_accounts)),
    (5, "download plans (resume after restart)", _create(schema.download_plans)),
    (6, "request signing keys of API keys", _create(schema.api_key_signing)),
    (7, "download job leases, 64-bit byte counts", _download_leases),
    (8, "leases of shared duties (Colab keep-alive), a worker's last use", _shared_duties),
]

LATEST_VERSION = MIGRATIONS[-1][0]


def current_version(conn: Connection) -> int:
    schema.metadata.create_all(conn, tables=[schema.schema_version])
    row = conn.execute(
        select(schema.schema_version.c.version).order_by(schema.schema_version.c.version.desc())
    ).first()
    return int(row[0]) if row else 0


def migrate(conn: Connection) -> int:
    """Apply every migration newer than the database; returns the resulting version.

    On PostgreSQL a transaction-scoped advisory lock makes instances that start together
    migrate one after the other (the second finds the work done)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(7201)"))
    version = current_version(conn)
    for number, note, step in MIGRATIONS:
        if number > version:
            step(conn)
            conn.execute(
                schema.schema_version.insert().values(
                    version=number, applied_at=utcnow(), note=note
                )
            )
            version = number
    return version
