"""Database backups: GET/POST /db/backup, POST /db/restore/{backup_id} (admin only)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("backups", __name__, url_prefix="/db")
