"""Answer requests on this machine with one of two engines (bridge/backends/engines/):
llama.cpp for GGUF models on CPU (the default model, straight from its packaged GGUF), and
transformers for HF-format models, CUDA and bitsandbytes. This module does what both share
once: loading and unloading, the context window and truncation, stop strings, events.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bridge.backends.embedding import EmbeddingSide
from bridge.backends.engines import Engine, Loaded, choose_engine, encode, gguf_in, stream
from bridge.backends.engines.llama_server import DEFAULT_CONTEXT
from bridge.backends.engines.llama_server import missing as llama_server_missing
from bridge.backends.residency import Residency
from bridge.backends.tokens import TokenSide
from bridge.config import DEFAULT_MODEL_ID
from bridge.errors import (
    BackendUnavailable,
    InvalidModel,
    NotSupported,
    ValidationError,
)
from bridge.models.convert import (
    PACKAGE,
    find_default_gguf,
    load_model,
    prepare_default_model,
    resolve_device,
)
from bridge.models.store import QUANTIZATIONS, ModelStore
from bridge.params import NUM_CTX_MAX
from bridge.types import Event, GenerateRequest

log = logging.getLogger(__name__)
DRAIN_SECONDS = 120.0  # how long an unload waits for the streams still reading a model


class LocalBackend(EmbeddingSide, Residency, TokenSide):
    """The Backend protocol over local models, each served by its engine (embedding models by
    the embedding engine: bridge/backends/embedding.py; keep-alive and context size:
    bridge/backends/residency.py; token ids: bridge/backends/tokens.py)."""

    name = "local"

    def __init__(
        self, store: ModelStore, *, keep_alive: float | None = 300.0, device: str = "auto",
        max_context: int | None = None, engine: str = "auto", threads: int | None = None,
        parallel: int = 0, llama_server: str = "", prompt_cache: bool = True,
    ) -> None:  # fmt: skip
        """``parallel``: llama.cpp slots per model (0: sized from memory, llama_server.plan;
        1 is the exact mode: no batching, greedy answers never depend on other requests);
        ``llama_server``: the binary (BRIDGE_LLAMA_SERVER; empty: found beside Python or on
        PATH); ``prompt_cache``: llama.cpp reuses a slot's cached prompt prefix."""
        self.store, self.keep_alive, self.device = store, keep_alive, device
        self.max_context, self.engine, self.threads = max_context, engine, threads
        self.parallel, self.llama_server, self.prompt_cache = parallel, llama_server, prompt_cache
        self._slots: dict[str, Loaded] = {}
        self._lock = threading.RLock()
        self.faults: list[dict[str, Any]] = []  # engine processes that died, newest last
        self.llama_cpp_missing = llama_server_missing(llama_server)
        if self.llama_cpp_missing and engine != "transformers":
            log.warning("llama.cpp engine unavailable, GGUF models run on transformers: %s",
                        self.llama_cpp_missing)  # fmt: skip

    @property
    def runtime_info(self) -> dict[str, Any]:
        """Which engine serves each loaded model, each llama-server's slots and state, the
        engine faults seen (newest 10), and whether llama.cpp is available (why not)."""
        with self._lock:  # a snapshot; each server's /metrics is scraped outside the lock
            loaded = {m: s.engine for m, s in self._slots.items()}
        engines = {m: e.name for m, e in loaded.items()}
        servers = {m: e.stats() for m, e in loaded.items() if hasattr(e, "stats")}
        return {"engine_setting": self.engine, "engines": engines, "llama_servers": servers,
                "expires_at": {m: self.expires_at(m) for m in engines},
                "engine_faults": self.faults[-10:], "engine_restarts": len(self.faults),
                "llama_cpp": {"available": self.llama_cpp_missing is None,
                              "reason": self.llama_cpp_missing}}  # fmt: skip

    def engine_of(self, model_id: str) -> str | None:
        """The engine serving a loaded model (None when not loaded)."""
        slot = self._slots.get(model_id)
        return slot.engine.name if slot is not None else None

    def ready(self) -> bool:
        """True when a model is loaded, the default model is stored, or its package is there."""
        if self._slots or self.store.is_complete(DEFAULT_MODEL_ID):
            return True
        return importlib.util.find_spec(PACKAGE) is not None

    def loaded_models(self) -> list[str]:
        """Ids of the models in memory (a question only: nothing is loaded or unloaded)."""
        return sorted(self._slots)

    def has_model(self, model_id: str) -> bool:
        """Whether this backend can serve ``model_id``: it is in the local store."""
        return self.store.has(model_id)

    def _gguf(self, model_id: str) -> Path | None:
        """The GGUF file that holds a model, if it is one (the default model: its package's)."""
        if model_id == DEFAULT_MODEL_ID:
            return find_default_gguf() if importlib.util.find_spec(PACKAGE) else None
        info = self.store.get(model_id)
        return gguf_in(info.path) if info.status == "ready" and info.path else None

    def load(self, model_id: str, device: str = "auto", quantization: str = "none",
             engine: str | None = None, parallel: int | None = None,
             context: int | None = None) -> float:  # fmt: skip
        """Load a model (no-op when loaded alike; the old copy stays on error); returns seconds.
        ``engine``: auto (llama.cpp for a GGUF on CPU), llama.cpp or transformers;
        ``parallel``: llama.cpp slots for this model (None: the backend's setting);
        ``context``: tokens of context per request (Ollama's num_ctx; None: the backend's,
        BRIDGE_CONTEXT_LENGTH; capped by the model's training context)."""
        if parallel is not None and not 1 <= parallel <= 64:
            raise ValidationError("parallel must be between 1 and 64")
        if context is not None and not 1 <= context <= NUM_CTX_MAX:
            raise ValidationError(f"num_ctx must be between 1 and {NUM_CTX_MAX}")
        asked = self.load_options(device, quantization, engine, parallel, context)
        if quantization not in QUANTIZATIONS:
            raise ValidationError(f"Unknown quantization {quantization!r}: one of {QUANTIZATIONS}")
        device = resolve_device(self.device if device == "auto" else device)
        requested = engine or self.engine
        with self._lock:
            gguf = self._gguf(model_id)
            if requested == "auto" and quantization != "none":
                requested = "transformers"  # the quantizations listed are transformers' own
            name = choose_engine(requested, device, gguf is not None, self.llama_cpp_missing)
            if name == "llama.cpp" and quantization != "none":
                raise NotSupported("A GGUF is quantized already: load it with quantization none")
            old = self._slots.get(model_id)
            label = gguf.name if name == "llama.cpp" and gguf else quantization
            slots = parallel or self.parallel
            now = getattr(old.engine, "plan", None) if old is not None else None
            if old is not None and old.engine.settings == (name, device, label) and (
                    parallel is None or now is None or now.parallel == parallel) and (
                    context in (None, old.engine.context, old.options.get("context"))):
                return 0.0
            start = time.perf_counter()
            new = Loaded(self._open(model_id, name, device, quantization, gguf, slots, context),
                         options=asked)
            self._slots[model_id] = new
            if model_id != DEFAULT_MODEL_ID or self.store.is_complete(model_id):
                self.store.pin(model_id)
                self.store.touch(model_id)
            seconds = time.perf_counter() - start
        if old is not None:  # its streams finish on the old copy, then it is freed
            threading.Thread(target=self._retire, args=(old,), daemon=True).start()
        return seconds

    def _open(self, model_id: str, name: str, device: str, quantization: str,
              gguf: Path | None, parallel: int = 0, context: int | None = None,
              ) -> Engine:  # fmt: skip
        """Load the weights into the engine called ``name``."""
        stored = model_id != DEFAULT_MODEL_ID
        context = context or self.max_context
        if name == "llama.cpp" and gguf is not None:
            from bridge.backends.engines.llama_cpp import LlamaCppEngine
            from bridge.backends.engines.llama_server import plan

            how = plan(gguf, parallel=parallel, context=context or 0,
                       threads=self.threads or 0)  # fmt: skip
            engine: Engine = self._load_checked(model_id, stored, lambda: LlamaCppEngine(
                gguf, how, binary=self.llama_server, cache_prompt=self.prompt_cache))  # fmt: skip
            return engine
        if self.store.get(model_id).type == "embedding":
            return self._open_embedding(model_id, device)
        from transformers import AutoTokenizer

        from bridge.backends.engines.transformers import TransformersEngine

        if model_id == DEFAULT_MODEL_ID:
            prepare_default_model(self.store)
        info = self.store.get(model_id)
        if info.status != "ready" or info.path is None:
            raise BackendUnavailable(f"Model {model_id!r} is {info.status}, not ready to load")
        if gguf is not None and model_id != DEFAULT_MODEL_ID:
            raise NotSupported("This model is a GGUF file: it is served by the llama.cpp engine")
        path = str(info.path)
        model = self._load_checked(model_id, True, lambda: load_model(path, device, quantization))
        tokenizer = self._load_checked(model_id, True, lambda: AutoTokenizer.from_pretrained(path))
        return TransformersEngine(model, tokenizer, device, quantization, context)

    def _load_checked(self, model_id: str, stored: bool, load: Callable[[], Any]) -> Any:
        """Run ``load``; a corrupt model folder is reported as ModelCorrupted naming the file."""
        if stored and not self.store.is_complete(model_id):
            self.store.verify(model_id)  # names the missing or resized file
        try:
            return load()
        except (NotSupported, ValidationError, InvalidModel):
            raise
        except Exception as exc:
            if stored:
                self.store.verify(model_id)  # same sizes, other bytes: the sha256 tells
            raise BackendUnavailable(
                f"Model {model_id!r} failed to load: {type(exc).__name__}: {exc}"[:500],
                details={"model_id": model_id},
            ) from exc

    def unload(self, model_id: str) -> None:
        """Let its streams finish, then free the model (unknown ids: no-op)."""
        with self._lock:
            slot = self._slots.pop(model_id, None)
        if slot is not None:
            self._retire(slot)
            if model_id not in self._slots:
                self.store.unpin(model_id)

    @staticmethod
    def _retire(slot: Loaded) -> None:
        """Wait (bounded) for the streams reading ``slot``, then close its engine."""
        deadline = time.monotonic() + DRAIN_SECONDS
        while slot.active > 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        slot.engine.close()

    def manager(self, model_id: str, sample: bool = False) -> Any:
        """The transformers ContinuousBatchingManager serving a loaded model (tests, benches)."""
        engine: Any = self._slots[model_id].engine
        return engine.manager(sample)

    def close(self) -> None:
        """Unload every model, stopping their threads."""
        for model_id in list(self._slots):
            self.unload(model_id)

    def _slot(self, model_id: str, num_ctx: int | None = None) -> Loaded:
        """The loaded model (loaded now if not yet, restarted if its process died, reloaded
        when ``num_ctx`` asks more context than it has), counted as in use."""
        with self._lock:
            dead = self._slots.get(model_id)
            if dead is not None and not getattr(dead.engine, "alive", lambda: True)():
                self._restart(model_id, dead)
            if model_id not in self._slots:  # with num_ctx where it asks more than the default
                more = (num_ctx or 0) > (self.max_context or DEFAULT_CONTEXT)
                self.load(model_id, context=num_ctx if more else None)
            self._fit_context(model_id, num_ctx)
            slot = self._slots[model_id]
            slot.active += 1
            slot.last_used = time.monotonic()
        if self.store.is_complete(model_id):
            self.store.touch(model_id)
        return slot

    def _restart(self, model_id: str, dead: Loaded) -> None:
        """Record an engine process that died (crash, OOM-kill) and drop it: the caller loads
        the model again. Seen in ``runtime_info`` (``/system/status``) and ``/metrics``."""
        server = getattr(dead.engine, "server", None)
        reason = server.exit_reason() if server is not None else "stopped"
        tail = server.log_tail(2) if server is not None else ""
        log.warning("engine for %s died (%s), restarting it: %s", model_id, reason, tail)
        self.faults.append({"model": model_id, "engine": dead.engine.name, "reason": reason,
                            "at": time.time()})  # fmt: skip
        del self.faults[:-100]
        if self._slots.get(model_id) is dead:
            del self._slots[model_id]
        threading.Thread(target=self._retire, args=(dead,), daemon=True).start()

    def _release(self, slot: Loaded) -> None:
        with self._lock:
            slot.active -= 1
            slot.last_used = time.monotonic()

    def generate(self, request: GenerateRequest) -> Iterator[Event]:
        """Stream Token events, then one Done (the model loads on first use)."""
        if request.max_tokens < 1:
            raise ValidationError("max_tokens must be at least 1")
        for attempt in (1, 2):
            slot = self._slot(request.model, request.num_ctx)
            sent = False
            try:
                ids = encode(slot.engine, request, self.effective_context(slot, request.num_ctx))
                for event in stream(slot.engine, request, *ids):
                    sent = True
                    yield event
                return
            except BackendUnavailable:
                # the engine's process died before the first token: once more on a new one
                if sent or attempt == 2 or getattr(slot.engine, "alive", lambda: True)():
                    raise
            finally:
                self._release(slot)
