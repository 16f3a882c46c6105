"""Backup files of the SQLite database: online copies, manifests, listing, retention.

Each backup is two files in ``home/backups``: ``<id>.sqlite3`` (a self-contained SQLite file,
journal mode DELETE) and ``<id>.json`` (its manifest: timestamp, size, sha256, schema version).
The data file is written under a hidden ``.partial`` name, flushed, verified, then renamed;
the manifest is written last, so a backup is listed only once it is complete.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import re
import secrets
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import make_url

from bridge.errors import BridgeError, Conflict, NotFound, NotSupported, ValidationError
from bridge.models.store import sha256_file
from local_api.storage.migrations import LATEST_VERSION
from local_api.timeutil import iso, utcnow

log = logging.getLogger("compute_bridge.backups")
ID_PATTERN = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")
SUFFIX = ".sqlite3"
_DUMP_TOOLS = {
    "postgresql": "pg_dump (and pg_restore)",
    "mysql": "mysqldump",
    "mariadb": "mariadb-dump",
}
_FULL_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
_SQLITE_FULL, _SQLITE_IOERR_WRITE = 13, 778


class StorageFull(BridgeError):
    """The backup directory ran out of space (HTTP 507)."""

    status, code, default_message = 507, "INSUFFICIENT_STORAGE", "Not enough disk space"


class Unusable(ValidationError):
    """A backup file that must not be restored; ``reason`` says why."""

    def __init__(self, backup_id: str, reason: str, message: str) -> None:
        super().__init__(message, details={"backup_id": backup_id, "reason": reason})


def database_path(url: str) -> Path:
    """The SQLite file behind ``url``; NotSupported for other databases or in-memory ones."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend != "sqlite":
        tool = _DUMP_TOOLS.get(backend, "your database's own dump tool")
        raise NotSupported(
            f"Backups through the API cover the embedded SQLite database only; this service uses "
            f"{backend}: back it up with {tool}",
            details={"database": backend, "tool": tool.split(" ")[0]},
        )
    name = parsed.database or ""
    if name in ("", ":memory:") or name.startswith("file:"):
        raise NotSupported("An in-memory SQLite database cannot be backed up")
    return Path(name)


def check_id(backup_id: str) -> str:
    """A backup id as this module makes them (no path separators, dots or other surprises)."""
    if not ID_PATTERN.match(backup_id):
        raise ValidationError(
            "backup_id is not a backup id (like 20250406T081423Z-1a2b3c4d)",
            details={"field": "backup_id"},
        )
    return backup_id


def _new_id(now: datetime) -> str:
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


@contextmanager
def lock(directory: Path, *, exclusive: bool) -> Iterator[None]:
    """Backups share the directory, a restore holds it alone; a busy lock is a Conflict."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Conflict(
                "A database restore is in progress; try again when it has finished"
                if not exclusive
                else "Another backup or restore is in progress; try again when it has finished",
                details={"reason": "busy"},
            ) from None
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _is_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return exc.errno in _FULL_ERRNOS
    code = getattr(exc, "sqlite_errorcode", None)
    return code in (_SQLITE_FULL, _SQLITE_IOERR_WRITE)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    try:
        _fsync(directory)
    except OSError as exc:  # some filesystems refuse fsync on directories
        if exc.errno not in (errno.EINVAL, errno.EBADF):
            raise


def copy_online(source: Path, target: Path) -> None:
    """SQLite's online backup: one read transaction, so a consistent copy while writes go on."""
    with closing(sqlite3.connect(source, timeout=30)) as src:
        with closing(sqlite3.connect(target)) as dst:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it


def inspect(path: Path, backup_id: str) -> int:
    """Refuse a file that is not a sound database of ours at a schema we know; its version."""
    try:
        with closing(sqlite3.connect(path)) as conn:
            result = conn.execute("PRAGMA integrity_check").fetchall()
            if result != [("ok",)]:
                problems = "; ".join(str(r[0]) for r in result[:3])
                raise Unusable(backup_id, "integrity_check_failed",
                               f"The backup fails SQLite's integrity check: {problems[:300]}")
            rows = conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            tables = {r[0] for r in rows}
            if not {"schema_version", "users"} <= tables:
                raise Unusable(backup_id, "foreign_database",
                               "The backup is a SQLite file but not a Compute Bridge database")
            top = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
            version = int(top or 0)
    except sqlite3.DatabaseError as exc:
        raise Unusable(backup_id, "not_a_database",
                       f"The backup is not a readable SQLite database ({exc})") from None
    if version > LATEST_VERSION:
        raise Unusable(backup_id, "newer_schema",
                       f"The backup has schema version {version}; this service knows up to "
                       f"{LATEST_VERSION}: upgrade Compute Bridge first")
    return version


def _write_json(path: Path, data: dict[str, Any]) -> None:
    partial = path.with_name(f".{path.name}.partial")
    with partial.open("w") as handle:
        json.dump(data, handle, indent=2)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)


def remove_files(*paths: Path) -> None:
    for path in paths:
        for extra in ("", "-journal", "-wal", "-shm"):
            Path(f"{path}{extra}").unlink(missing_ok=True)


def _check_space(source: Path, directory: Path) -> None:
    files = [Path(f"{source}{suffix}") for suffix in ("", "-wal")]
    need = sum(f.stat().st_size for f in files if f.exists())
    free = shutil.disk_usage(directory).free
    if free < need + (1 << 20):
        raise StorageFull(
            f"Not enough space in {directory} for a backup: {free} bytes free, about {need} needed",
            details={"free_bytes": free, "needed_bytes": need},
        )


def create(source: Path, directory: Path, *, kind: str = "manual", created_by: int | None = None,
           retention: int = 0) -> dict[str, Any]:
    """Copy the live database into a new backup and return its manifest (lock held by caller)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    now = utcnow()
    backup_id = _new_id(now)
    partial = directory / f".{backup_id}{SUFFIX}.partial"
    final = directory / f"{backup_id}{SUFFIX}"
    manifest_path = directory / f"{backup_id}.json"
    try:
        _check_space(source, directory)
        copy_online(source, partial)
        os.chmod(partial, 0o600)  # password hashes and sealed secrets: owner only
        _fsync(partial)
        version = inspect(partial, backup_id)
        manifest: dict[str, Any] = {
            "id": backup_id, "created_at": now.isoformat(), "size": partial.stat().st_size,
            "sha256": sha256_file(partial), "status": "completed", "kind": kind,
            "schema_version": version, "created_by": created_by,
        }
        os.replace(partial, final)
        _write_json(manifest_path, manifest)
        _fsync_dir(directory)
    except BaseException as exc:
        remove_files(partial, final, manifest_path, directory / f".{backup_id}.json.partial")
        if isinstance(exc, Unusable):
            raise BridgeError(f"The live database could not be backed up: {exc.message}") from None
        if _is_full(exc):
            raise StorageFull(f"The disk filled while writing the backup to {directory}",
                              details={"error": str(exc)[:200]}) from None
        if isinstance(exc, OSError | sqlite3.Error):
            raise BridgeError(f"Backup failed: {exc}") from exc
        raise
    log.info("backup %s written (%d bytes, sha256 %s)", backup_id, manifest["size"],
             manifest["sha256"][:12])
    prune(directory, retention)
    return manifest


def _manifests(directory: Path) -> Iterator[dict[str, Any]]:
    if not directory.is_dir():
        return
    for path in directory.glob("*.json"):
        if not ID_PATTERN.match(path.stem) or not (directory / f"{path.stem}{SUFFIX}").is_file():
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            log.warning("ignoring unreadable backup manifest %s", path.name)
            continue
        if isinstance(data, dict) and data.get("id") == path.stem:
            yield data


def list_all(directory: Path) -> list[dict[str, Any]]:
    """Complete backups, newest first."""
    return sorted(_manifests(directory), key=lambda m: (m["created_at"], m["id"]), reverse=True)


def find(directory: Path, backup_id: str) -> dict[str, Any]:
    check_id(backup_id)
    path = directory / f"{backup_id}.json"
    found = next((m for m in _manifests(directory) if m["id"] == backup_id), None)
    if found is None or not path.is_file():
        raise NotFound("No such backup", details={"backup_id": backup_id})
    return found


def data_file(directory: Path, backup_id: str) -> Path:
    return directory / f"{check_id(backup_id)}{SUFFIX}"


def prune(directory: Path, retention: int) -> list[str]:
    """Remove the oldest backups beyond ``retention`` (0 keeps everything); the ids removed."""
    if retention <= 0:
        return []
    removed = []
    for manifest in list_all(directory)[retention:]:
        remove_files(directory / f"{manifest['id']}.json", data_file(directory, manifest["id"]))
        removed.append(manifest["id"])
    if removed:
        log.info("retention %d: removed backups %s", retention, ", ".join(removed))
    return removed


def public(manifest: dict[str, Any]) -> dict[str, Any]:
    """A manifest as the API shows it (AQ's id, timestamp, size, status, and more)."""
    return {
        "id": manifest["id"],
        "timestamp": iso(datetime.fromisoformat(manifest["created_at"])),
        "size": manifest["size"],
        "status": manifest["status"],
        "sha256": manifest["sha256"],
        "kind": manifest.get("kind", "manual"),
        "schema_version": manifest.get("schema_version"),
    }
