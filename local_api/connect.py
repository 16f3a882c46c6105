"""Attach remote compute: POST/DELETE /system/colab/connect and the Google OAuth callback."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("connect", __name__, url_prefix="/system/colab")
