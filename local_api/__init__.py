"""The local Flask API: `create_app` builds it, each module wires itself with `init_app`."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Flask

from bridge.config import Settings

# Every resource blueprint is served under both prefixes (API.md: AQ's and FT's paths).
PREFIXES = ("/api/v1", "/api")


def _mount(app: Flask, blueprint: Blueprint) -> None:
    for prefix in PREFIXES:
        name = blueprint.name if prefix == "/api/v1" else f"{blueprint.name}_ft"
        url_prefix = prefix + (blueprint.url_prefix or "")
        app.register_blueprint(blueprint, url_prefix=url_prefix, name=name)


def create_app(config: dict[str, Any] | Settings | None = None, **collaborators: Any) -> Flask:
    """Build the app; ``config`` is a Settings or a dict of overrides on the environment."""
    from local_api import (
        api_keys,
        audit,
        auth,
        db,
        errors,
        health,
        identity,
        limits,
        openapi,
        users,
    )

    if isinstance(config, Settings):
        settings = config
    else:
        settings = Settings.from_env(**(config or {}))
    app = Flask(__name__)
    app.config["SETTINGS"] = settings
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.config["JSON_SORT_KEYS"] = False
    app.extensions["collaborators"] = collaborators
    logging.getLogger("compute_bridge").setLevel(settings.log_level.upper())

    errors.init_app(app)
    db.init_app(app)
    identity.init_app(app)
    limits.init_app(app)
    for blueprint in (auth.bp, api_keys.bp, users.bp, audit.bp):
        _mount(app, blueprint)
    app.register_blueprint(health.bp)
    app.register_blueprint(openapi.bp)
    return app
