"""The compute behind the API: the model store, the local backend and the one router."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app

from bridge.config import Settings
from bridge.errors import BridgeError, ModelNotFound
from bridge.model_store import ModelStore

log = logging.getLogger("compute_bridge.compute")


@dataclass
class Compute:
    store: ModelStore
    local: Any  # LocalBackend (or any Backend with load/unload/loaded_models)
    router: Any  # bridge.router.Router

    def require_model(self, model_id: str) -> None:
        """ModelNotFound unless the store or an attached worker has ``model_id``."""
        if any(m.id == model_id for m in self.store.list()):
            return
        for backend in self.router.backends():
            if model_id in (backend.get("models") or []):
                return
        raise ModelNotFound(details={"model_id": model_id[:128]})


def _default_local(store: ModelStore, settings: Settings) -> Any:
    from bridge.local_backend import LocalBackend

    return LocalBackend(store, keep_alive=settings.keep_alive)


def init_app(app: Flask, collaborators: dict[str, Any]) -> None:
    settings: Settings = app.config["SETTINGS"]
    store = collaborators.get("store") or ModelStore(
        settings.models_dir, settings.model_budget_bytes or None
    )
    router = collaborators.get("router")
    local = collaborators.get("local")
    if router is None:
        from bridge.router import Router

        local = local or _default_local(store, settings)
        router = Router(local)
        router.start()
    else:
        local = local or getattr(router, "local", None)
    if settings.prepare_model:
        from bridge.convert import prepare_default_model

        try:
            prepare_default_model(store)
        except BridgeError as exc:  # the API still serves accounts; generation will say why
            log.error("default model is not ready: %s", exc.message)
    app.extensions["compute"] = Compute(store, local, router)


def compute() -> Compute:
    return current_app.extensions["compute"]  # type: ignore[no-any-return]
