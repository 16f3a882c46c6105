"""Transport hardening: security headers, CORS, ProxyFix."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Wire security headers, CORS and ProxyFix into ``app``."""
