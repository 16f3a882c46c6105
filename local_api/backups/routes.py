"""Database backups: GET/POST /db/backup, POST /db/restore/{backup_id} (admin only, audited)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Blueprint, current_app

from bridge.config import Settings
from bridge.errors import BridgeError, ValidationError
from colab_runtime import drive
from local_api.accounts import audit
from local_api.accounts.identity import admin_required, current_identity
from local_api.backups import restore as restoring
from local_api.backups import store
from local_api.docs import spec
from local_api.remote import google_account, workers
from local_api.storage.db import engine
from local_api.system.metrics import count_backup
from local_api.timeutil import iso
from local_api.validation import json_body, obj

bp = Blueprint("backups", __name__, url_prefix="/db")
SQLITE_TYPE = "application/vnd.sqlite3"


def _settings() -> Settings:
    return current_app.config["SETTINGS"]  # type: ignore[no-any-return]


def _live() -> Path:
    """The SQLite file, or NotSupported (naming the right tool) for other databases."""
    return store.database_path(_settings().db_url)


def _admin_id() -> int | None:
    who = current_identity()
    return who.user_id if who else None


@bp.get("/backup")
@spec("List database backups, newest first (admin)", auth="admin")
@admin_required
def list_backups() -> dict[str, Any]:
    _live()
    settings = _settings()
    backups = store.list_all(settings.backups_dir)
    return {
        "backups": [store.public(m) for m in backups],
        "retention": settings.backup_retention,
    }


CREATE = obj({"offsite": {"type": "string", "enum": ["drive"]}})


def _drive_credentials(body: dict[str, Any]) -> Any:
    """The admin's Google credentials when an off-site copy is asked for (checked up front)."""
    if body.get("offsite") != "drive":
        return None
    who = current_identity()
    credentials = google_account.stored_credentials(who.user_id) if who else None
    if credentials is None:
        raise ValidationError(
            "No Google account is connected: sign in through POST /system/colab/connect with "
            "credentials first, then ask for the off-site copy again",
            details={"field": "offsite"},
        )
    return credentials


def _copy_to_drive(credentials: Any, manifest: dict[str, Any]) -> dict[str, Any]:
    """Upload the backup file; a failure is reported in the answer, the local backup stands."""
    path = store.data_file(_settings().backups_dir, manifest["id"])
    name = f"compute-bridge-{manifest['id']}.sqlite3"
    try:
        file_id, shown = drive.upload_file(
            credentials, path, name=name, drive_type=SQLITE_TYPE, media_type=SQLITE_TYPE,
            root_url=google_account.endpoints().drive_root_url,
        )  # fmt: skip
    except BridgeError as exc:
        audit.record("db_backup_offsite", "failure", backup_id=manifest["id"], error=exc.code)
        return {"status": "failed", "error": exc.to_dict()["error"]}
    audit.record("db_backup_offsite", backup_id=manifest["id"], drive_file_id=file_id)
    return {"status": "uploaded", "drive_file_id": file_id, "name": shown}


@bp.post("/backup")
@spec("Back up the database now, consistent while writes go on; offsite: drive copies it to "
      "the admin's Google Drive (admin)", auth="admin", body=CREATE, status=201)
@admin_required
def create_backup() -> tuple[dict[str, Any], int]:
    body = json_body(CREATE, optional=True)
    live = _live()
    credentials = _drive_credentials(body)
    settings = _settings()
    try:
        with store.lock(settings.backups_dir, exclusive=False):
            manifest = store.create(
                live, settings.backups_dir, created_by=_admin_id(),
                retention=settings.backup_retention,
            )
    except BridgeError as exc:
        count_backup("backup", "failure")
        audit.record("db_backup", "failure", error=exc.code, message=exc.message[:200])
        raise
    count_backup("backup", "success")
    shown = store.public(manifest)
    audit.record("db_backup", backup_id=manifest["id"], size=manifest["size"])
    answer = {"backup_id": manifest["id"], **shown}
    if credentials is not None:
        answer["offsite"] = _copy_to_drive(credentials, manifest)
    return answer, 201


@bp.post("/restore/<backup_id>")
@spec("Restore the database from a backup; the present state is backed up first (admin)",
      auth="admin")
@admin_required
def restore(backup_id: str) -> dict[str, Any]:
    live = _live()
    settings = _settings()
    try:
        result = restoring.restore(
            engine(), live, settings.backups_dir, backup_id, created_by=_admin_id()
        )
    except BridgeError as exc:
        count_backup("restore", "failure")
        reason = exc.details.get("reason") if isinstance(exc.details, dict) else None
        audit.record("db_restore", "failure", backup_id=backup_id[:64], error=exc.code,
                     reason=reason)
        raise
    count_backup("restore", "success")
    current_app.extensions["signing_enrolled"].clear()  # the restored table is the truth now
    attached = workers.resync(current_app)  # attached workers: what the restored database holds
    audit.record("db_restore", backup_id=backup_id, safety_backup_id=result["safety_backup_id"])
    return {**result, "restored_at": iso(result["restored_at"]), "workers": attached}
