"""Model downloads: POST /models/download, GET /models/{id}/status, DELETE /models/{id}/download."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("downloads", __name__, url_prefix="/models")
