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
    """Build the app; ``config`` is a Settings or a dict of overrides on the environment.

    Collaborators (all optional): ``router`` (bridge.router.Router), ``local`` (the local
    backend), ``store`` (bridge.models.store.ModelStore). Missing ones are built from settings.
    """
    from local_api import browser_guard, errors, events, limits, openapi, security
    from local_api.accounts import api_keys, audit, auth, identity, profile
    from local_api.anthropic import routes as anthropic
    from local_api.backups import routes as backups
    from local_api.generation import cache, compute, conversations, ws
    from local_api.generation import routes as generation
    from local_api.models import downloads
    from local_api.models import routes as models
    from local_api.ollama import routes as ollama
    from local_api.openai import routes as openai
    from local_api.remote import routes as remote
    from local_api.storage import crypto, db, shared_state
    from local_api.system import health, landing, metrics
    from local_api.system import status as system

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
    security.init_app(app)
    browser_guard.init_app(app)
    metrics.init_app(app)
    db.init_app(app)
    shared_state.init_app(app)
    events.init_app(app)
    crypto.init_app(app)
    identity.init_app(app)
    limits.init_app(app)
    compute.init_app(app, collaborators)
    cache.init_app(app)
    resources = (
        auth, api_keys, profile, audit, models, downloads, generation, conversations, system,
        remote, backups,
    )
    for module in resources:
        _mount(app, module.bp)
    ws.init_app(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(landing.bp)  # / and /docs/
    app.register_blueprint(openai.bp)  # /v1, OpenAI shapes (not under /api)
    app.register_blueprint(anthropic.bp)  # /v1/messages, Anthropic shapes
    app.register_blueprint(ollama.bp)  # /ollama/api, Ollama shapes
    return app


def shutdown(app: Flask) -> None:
    """Stop what create_app started: router probes, idle timers, database connections."""
    from local_api.models import downloads
    from local_api.storage import shared_state

    compute = app.extensions.get("compute")
    if compute is not None:
        compute.close()
        downloads.close(app)  # waits for download threads; partial files stay for resume
        remote = app.extensions.get("remote")
        if remote is not None:
            remote.close()  # keep-alives of attached runtimes
        compute.router.close()
        closer = getattr(compute.local, "close", None)
        if closer is not None and app.extensions["collaborators"].get("local") is None:
            closer()
    app.extensions["events"].close()
    shared_state.close(app)
    app.extensions["db"].dispose()
