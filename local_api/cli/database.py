"""`bridge db copy --to URL`: move this machine's database (SQLite) into an empty PostgreSQL."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, make_url, select, text

from bridge.config import Settings
from bridge.errors import Conflict, ValidationError
from local_api.storage import schema
from local_api.storage.db import create_db_engine
from local_api.storage.migrations import migrate

BATCH = 1000


def _counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {table.name: int(conn.execute(select(func.count()).select_from(table))
                                .scalar_one())
                for table in schema.metadata.sorted_tables if table is not schema.schema_version}


def copy_database(source_url: str, target_url: str) -> dict[str, int]:
    """Copy every row, parents first, in one target transaction; the row counts copied.

    Both are migrated to the latest schema first; a target holding any row is refused."""
    source = create_db_engine(source_url)
    target = create_db_engine(target_url)
    try:
        with source.begin() as conn:
            migrate(conn)
        with target.begin() as conn:
            migrate(conn)
        if any(_counts(target).values()):
            raise Conflict("The target database is not empty; copy into an empty one",
                           details={"target": _safe(target_url)})
        with source.connect() as read, target.begin() as write:
            for table in schema.metadata.sorted_tables:
                if table is schema.schema_version:
                    continue
                result = read.execute(select(table)).mappings()
                while rows := result.fetchmany(BATCH):
                    write.execute(table.insert(), [_aware(r) for r in rows])
            if write.dialect.name == "postgresql":
                _advance_sequences(write)
        copied, landed = _counts(source), _counts(target)
        if copied != landed:
            raise ValidationError("Row counts differ after the copy",
                                  details={"source": copied, "target": landed})
        return landed
    finally:
        source.dispose()
        target.dispose()


def _aware(row: Any) -> dict[str, Any]:
    """SQLite hands back naive datetimes; the service wrote them in UTC, so say so (else
    PostgreSQL reads them in its session's time zone)."""
    return {k: v.replace(tzinfo=UTC) if isinstance(v, datetime) and v.tzinfo is None else v
            for k, v in row.items()}


def _advance_sequences(conn: Any) -> None:
    """Rows came with their ids: the id sequences must continue after the largest."""
    for table in schema.metadata.sorted_tables:
        column = table.c.get("id")
        if column is None or column.autoincrement is not True:
            continue
        conn.execute(text(
            f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
            f"COALESCE((SELECT MAX(id) FROM {table.name}), 0) + 1, false)"))


def _safe(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def copy(args: argparse.Namespace) -> int:
    settings = Settings.from_env(home=args.home)
    if not args.to.startswith(("postgresql", "postgres")):
        raise ValidationError("--to must be a postgresql:// URL")
    counts = copy_database(settings.db_url, args.to)
    print(f"copied {sum(counts.values())} rows from {_safe(settings.db_url)} "
          f"to {_safe(args.to)}")
    for name, count in counts.items():
        print(f"  {name}: {count}")
    print("Now run every instance with DATABASE_URL set to the target (and the same "
          "BRIDGE_SECRET_KEY / BRIDGE_JWT_SECRET, or a copy of secret.key and jwt_secret).")
    return 0


def register(sub: Any) -> None:
    db = sub.add_parser("db", help="database maintenance", description="Database maintenance.")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    p = db_sub.add_parser(
        "copy", help="copy this machine's database into an empty PostgreSQL database",
        description="Copy every row of this machine's database (BRIDGE_HOME or DATABASE_URL) "
        "into an empty PostgreSQL database, check the row counts, and print them. Stop the "
        "service first. A target holding any row is refused.",
    )
    p.add_argument("--to", required=True, metavar="URL", help="postgresql://user@host/db")
    p.add_argument("--home", help="data directory (env BRIDGE_HOME)")
    p.set_defaults(func=copy)
