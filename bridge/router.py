"""Router: the one place that decides which backend answers a request.

Rules, in order: a healthy remote worker whose circuit is not open and that has the model
(an empty model list means "any"), least outstanding requests first; else the local backend.
A worker that fails before its first token is retried locally (only ``Done.backend`` shows
it); one that dies mid-stream is followed by a ``BackendSwitched`` event and the local
backend continues from the text already sent (``prefill``).

Each worker's health and circuit breaker live in ``bridge.circuit``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from bridge.circuit import WorkerState
from bridge.embeddings import Embeddings, EmbedRequest
from bridge.errors import BackendUnavailable, BridgeError, Conflict, NotFound, ValidationError
from bridge.types import Backend, BackendSwitched, Done, Event, GenerateRequest, Token

log = logging.getLogger(__name__)


def models_of(backend: object) -> list[str]:
    """The models a backend reports: ``loaded_models()`` or a ``models`` list, else none."""
    loaded = getattr(backend, "loaded_models", None)
    models = loaded() if callable(loaded) else getattr(backend, "models", None)
    return [str(m) for m in models] if isinstance(models, list | tuple) else []


def _lists(worker: WorkerState, model: str) -> bool:
    """A worker serves the models it lists; one that lists none takes any model."""
    return not worker.models or model in worker.models


def close_stream(obj: object) -> None:
    """Close a generator (or anything with close()) now rather than at garbage collection."""
    close = getattr(obj, "close", None)
    if callable(close):
        close()


class Router:
    """Routes each request to a remote worker or the local backend; thread-safe."""

    def __init__(
        self,
        local: Backend | None,
        *,
        probe_interval: float = 30.0,
        failure_threshold: int = 3,
        cooldown: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.local = local
        self.probe_interval = probe_interval
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._workers: dict[str, WorkerState] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add_worker(self, backend: Backend) -> None:
        """Attach a remote backend (RemoteBackend, OpenAIBackend, ...) under its name."""
        with self._lock:
            if backend.name in self._workers or (self.local and self.local.name == backend.name):
                raise Conflict(f"a backend named {backend.name!r} is already attached")
            self._workers[backend.name] = WorkerState(backend)

    def remove_worker(self, name: str) -> None:
        """Detach a worker and close its connections."""
        with self._lock:
            worker = self._workers.pop(name, None)
        if worker is None:
            raise NotFound(f"no worker named {name!r}", details={"worker": name})
        close_stream(worker.backend)

    def _circuit(self, worker: WorkerState, now: float) -> str:
        return worker.circuit(now, self.cooldown)

    def backends(self) -> list[dict[str, Any]]:
        """Every backend with its health, for GET /system/status."""
        out: list[dict[str, Any]] = []
        if self.local is not None:
            out.append({"name": self.local.name, "kind": "local",
                        "healthy": bool(self.local.ready()), "latency_ms": None,
                        "models": models_of(self.local),
                        "runtime_info": dict(getattr(self.local, "runtime_info", None) or {})})
        now = self._clock()
        with self._lock:
            out.extend(w.describe(now, self.cooldown) for w in self._workers.values())
        return out

    def _record(self, worker: WorkerState, error: BaseException | None) -> None:
        """Feed one outcome into the worker's circuit breaker (call with the lock held)."""
        worker.record(error, self._clock(), self.failure_threshold)

    def probe_all(self) -> None:
        """Probe every worker now (the probe thread calls this; tests may call it directly)."""
        with self._lock:
            workers = list(self._workers.values())
        for worker in workers:
            self._probe(worker)

    def probe_worker(self, name: str) -> dict[str, Any]:
        """Probe one worker now (even with its circuit open) and return its status entry."""
        with self._lock:
            worker = self._workers.get(name)
        if worker is None:
            raise NotFound(f"no worker named {name!r}", details={"worker": name})
        self._probe(worker, force=True)
        return next(b for b in self.backends() if b["name"] == name and b["kind"] != "local")

    def _probe(self, worker: WorkerState, force: bool = False) -> None:
        with self._lock:
            if not force and self._circuit(worker, self._clock()) == "open":
                return
        try:
            probe = getattr(worker.backend, "probe", None)
            if callable(probe):
                result = probe()
            elif worker.backend.ready():
                result = {}
            else:
                raise BackendUnavailable(f"{worker.backend.name} is not ready")
        except Exception as exc:  # a probe must never kill the probe thread
            with self._lock:
                worker.healthy = False
                self._record(worker, exc)
            return
        with self._lock:
            worker.latency_ms = result.get("latency_ms")
            worker.models = [str(m) for m in result.get("models") or []]
            worker.runtime_info = dict(result.get("runtime_info") or {})
            self._record(worker, None)

    def start(self) -> None:
        """Start probing every ``probe_interval`` seconds in a daemon thread."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._probe_loop, name="bridge-router-probe", daemon=True
            )
            self._thread.start()

    def probe_due(self) -> None:
        """Probe the workers whose next periodic probe is due; a worker behind a metered
        tunnel (its backend's ``probe_interval``, e.g. ngrok's free plan) is probed less
        often than ``probe_interval`` so the tunnel's monthly quota lasts the month."""
        now = self._clock()
        with self._lock:
            due = [w for w in self._workers.values() if now >= w.next_probe]
            for w in due:
                every = getattr(w.backend, "probe_interval", None) or 0.0
                w.next_probe = now + max(self.probe_interval, every)
        for worker in due:
            self._probe(worker)

    def _probe_loop(self) -> None:
        while not self._stop.is_set():
            self.probe_due()
            self._stop.wait(self.probe_interval)

    def close(self) -> None:
        """Stop the probe thread and close every worker's connections."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=max(30.0, self.probe_interval))
        with self._lock:
            workers = list(self._workers.values())
        for worker in workers:
            close_stream(worker.backend)

    def serving(self, model: str, *, local_has: bool | None = None) -> list[str]:
        """Names of the backends that can serve ``model``: the one answer to "who can serve
        model X", with no side effects. The local backend counts when ``local_has`` says so
        (the caller's model store), else when its ``has_model`` does; then each attached
        worker that lists the model (one that lists none takes any)."""
        names = []
        if self.local is not None:
            if local_has is None:
                has_model = getattr(self.local, "has_model", None)
                local_has = has_model(model) if callable(has_model) else True
            if local_has:
                names.append(self.local.name)
        with self._lock:
            names.extend(name for name, w in self._workers.items() if _lists(w, model))
        return names

    def _acquire(self, model: str, need: str = "generate") -> WorkerState | None:
        """Pick the worker for ``model`` (one with a ``need`` method) and count the request."""
        now = self._clock()
        with self._lock:
            eligible: list[tuple[float, float, int, WorkerState]] = []
            for index, w in enumerate(self._workers.values()):
                circuit = self._circuit(w, now)
                if circuit == "open" or (circuit == "half_open" and w.trial):
                    continue
                if circuit == "closed" and w.healthy is False:
                    continue
                if not _lists(w, model) or not callable(getattr(w.backend, need, None)):
                    continue
                latency = w.latency_ms if w.latency_ms is not None else float("inf")
                eligible.append((w.outstanding, latency, index, w))
            if not eligible:
                return None
            worker = min(eligible, key=lambda item: item[:3])[3]
            worker.trial = self._circuit(worker, now) == "half_open"
            worker.outstanding += 1
            return worker

    def _why_none(self, model: str) -> str:
        with self._lock:
            states = [f"{name}: {w.last_error or 'unhealthy'}" for name, w in self._workers.items()]
        detail = "; ".join(states) if states else "no worker attached"
        return f"No backend can answer {model!r} (no local backend; {detail})"

    def generate(self, request: GenerateRequest) -> Iterator[Event]:
        """Stream the answer from the chosen backend, failing over to local when a worker fails."""
        worker = self._acquire(request.model)
        if worker is None:
            if self.local is None:
                raise BackendUnavailable(self._why_none(request.model))
            yield from self._stream(self.local, request, 0)
            return
        sent: list[str] = []
        error: BaseException | None = None
        finished, stream = False, None
        try:
            stream = worker.backend.generate(request)
            for event in stream:
                if isinstance(event, Token):
                    sent.append(event.text)
                elif isinstance(event, Done):
                    finished = True
                    event = replace(event, backend=worker.backend.name)
                yield event
                if finished:
                    break
            if not finished:
                raise BackendUnavailable(f"{worker.backend.name} ended its stream without done")
        except ValidationError:  # the request's fault (a schema it cannot enforce): no failover
            finished = True  # the worker answered, and is healthy
            raise
        except Exception as exc:
            error = exc
        finally:
            close_stream(stream)
            with self._lock:
                worker.outstanding -= 1
                if finished or error is not None:
                    self._record(worker, error)
                else:  # the client went away: neither a success nor a failure
                    worker.trial = False
        if error is None:
            return
        yield from self._fail_over(worker.backend.name, request, "".join(sent), len(sent), error)

    def embed(self, request: EmbedRequest) -> Embeddings:
        """Embeddings from the backend the same rules pick (a worker that has the model and
        embeds, else local); a worker's failure (not a refusal of the input) goes local."""
        worker = self._acquire(request.model, "embed")
        if worker is not None:
            error: BaseException | None = None
            try:
                embed: Callable[[EmbedRequest], Embeddings] = worker.backend.embed  # type: ignore[attr-defined]
                return replace(embed(request), backend=worker.backend.name)
            except Exception as exc:
                error = None if isinstance(exc, ValidationError | NotFound) else exc
                if self.local is None or error is None:
                    raise
                log.warning("worker %s failed to embed, answering locally: %s",
                            worker.backend.name, exc)  # fmt: skip
            finally:
                with self._lock:
                    worker.outstanding -= 1
                    self._record(worker, error)
        local: Callable[[EmbedRequest], Embeddings] | None = getattr(self.local, "embed", None)
        if self.local is None or local is None:
            raise BackendUnavailable(self._why_none(request.model))
        return replace(local(request), backend=self.local.name)

    def _fail_over(
        self, name: str, request: GenerateRequest, text: str, count: int, error: BaseException
    ) -> Iterator[Event]:
        if self.local is None:
            if not count and isinstance(error, BridgeError):
                raise error
            raise BackendUnavailable(f"worker {name} failed and no local backend: {error}")
        log.warning("worker %s failed after %d tokens: %s", name, count, error)
        with self._lock:
            worker = self._workers.get(name)
            if worker is not None:
                worker.failovers["mid_stream" if count else "before_first_token"] += 1
        if count:
            yield BackendSwitched(name, self.local.name, f"{type(error).__name__}: {error}")
        remaining = max(1, request.max_tokens - count)
        rest = replace(request, prefill=request.prefill + text, max_tokens=remaining)
        yield from self._stream(self.local, rest, count)

    def _stream(self, backend: Backend, request: GenerateRequest, sent: int) -> Iterator[Event]:
        stream = backend.generate(request)
        try:
            for event in stream:
                if isinstance(event, Done):
                    tokens = event.completion_tokens + sent
                    event = replace(event, backend=backend.name, completion_tokens=tokens)
                yield event
        finally:
            close_stream(stream)
