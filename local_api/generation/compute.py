"""The compute behind the API: the model store, the local backend and the one router."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app

from bridge.config import Settings
from bridge.errors import BridgeError, ModelNotFound
from bridge.models.store import ModelStore
from bridge.types import GenerateRequest, collect

if TYPE_CHECKING:
    from bridge.router import Router

log = logging.getLogger("compute_bridge.compute")


@dataclass
class Compute:
    store: ModelStore
    local: Any  # LocalBackend (or any Backend with load/unload/loaded_models)
    router: Router
    stop: threading.Event = field(default_factory=threading.Event)

    def close(self) -> None:
        self.stop.set()

    def require_model(self, model_id: str) -> list[str]:
        """The backends that can serve ``model_id`` (ModelNotFound when none can)."""
        names = self.router.serving(model_id, local_has=self.store.has(model_id))
        if not names:
            from bridge.downloads.registry import REGISTRY

            if model_id in REGISTRY:  # listed as downloadable: say how to get it
                raise ModelNotFound(
                    f"Model {model_id!r} is not downloaded yet: run `bridge models pull "
                    f"{model_id}` (or POST /api/v1/models/download "
                    f'{{"model_id": "{model_id}"}})',
                    details={"model_id": model_id, "status": "downloadable"},
                )
            raise ModelNotFound(details={"model_id": model_id[:128]})
        return names


def _default_local(store: ModelStore, settings: Settings) -> Any:
    from bridge.backends.local import LocalBackend

    return LocalBackend(store, keep_alive=settings.keep_alive, engine=settings.engine,
                        parallel=settings.num_parallel, max_context=settings.context_length or None,
                        llama_server=settings.llama_server, prompt_cache=settings.prompt_cache)


def _needs_conversion(local: Any, settings: Settings) -> bool:
    """Whether the default model must be converted from its GGUF first: only when it will not
    be served by llama.cpp, which reads the GGUF itself (no 517 MB copy, no 20 s wait)."""
    return settings.engine == "transformers" or bool(getattr(local, "llama_cpp_missing", True))


def _warm(local: Any, model_id: str) -> None:
    """Load the default model and run one token, so the first real answer is quick."""
    try:
        collect(local.generate(GenerateRequest(model_id, prompt="Hi", max_tokens=1, temperature=0)))
        log.info("model %s is loaded and warm", model_id)
    except BridgeError as exc:
        log.warning("could not warm %s: %s", model_id, exc.message)


def _janitor(local: Any, stop: threading.Event, every: float) -> None:
    """Unload models idle for ``keep_alive`` seconds, checked every ``every`` seconds."""
    while not stop.wait(every):
        try:
            local.unload_idle()
        except Exception:  # never let housekeeping kill the thread
            log.exception("idle-unload check failed")


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
    result = Compute(store, local, router)
    if settings.prepare_model:
        from bridge.models.convert import prepare_default_model

        try:
            if _needs_conversion(local, settings):
                prepare_default_model(store)  # transformers reads safetensors, not the GGUF
            threading.Thread(
                target=_warm, args=(local, settings.default_model), daemon=True
            ).start()
        except BridgeError as exc:  # the API still serves accounts; generation will say why
            log.error("default model is not ready: %s", exc.message)
    if local is not None and hasattr(local, "unload_idle") and settings.keep_alive > 0:
        every = max(1.0, min(5.0, settings.keep_alive / 4))  # a request's keep_alive may be short
        threading.Thread(
            target=_janitor, args=(local, result.stop, every), daemon=True, name="idle-unload"
        ).start()
    app.extensions["compute"] = result


def compute() -> Compute:
    return current_app.extensions["compute"]  # type: ignore[no-any-return]
