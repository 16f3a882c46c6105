"""Prometheus /metrics and structured request logs."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Wire metrics and request logging into ``app``."""
