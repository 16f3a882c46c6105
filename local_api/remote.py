"""Attached remote compute: router workers persisted in `workers`, re-attached when the app starts.

A Colab worker also holds its control-plane client and a KeepAlive thread (keep-alive every
~60 s, proxy-token renewal before expiry). Secrets (worker secret, API key) are stored with the
app's SecretBox and never leave this module in an answer.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, current_app
from sqlalchemy import delete, select

from bridge.errors import BridgeError, NotFound, ValidationError
from bridge.openai_backend import OpenAIBackend
from bridge.remote_backend import RemoteBackend
from colab_runtime.colab import Assignment, ColabClient, KeepAlive
from local_api import google_account, schema
from local_api.timeutil import duration, utcnow

log = logging.getLogger("compute_bridge.remote")
COLAB_SESSION_CAP = 12 * 3600  # free tier; paid tiers get up to 24 h
COLAB_IDLE_RECLAIM = 90 * 60


@dataclass
class Attached:
    """One attached remote backend and what the service keeps for it."""

    name: str
    kind: str  # worker | openai
    url: str
    backend: Any
    runtime: dict[str, Any] = field(default_factory=dict)  # stored: mode, launched, colab...
    client: ColabClient | None = None  # the Colab control plane, for keep-alive and release
    keepalive: KeepAlive | None = None

    @property
    def colab(self) -> dict[str, Any] | None:
        found = self.runtime.get("colab")
        return found if isinstance(found, dict) else None


def public_url(url: str) -> str:
    """A URL without credentials or query, safe to log and show."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def build_backend(name: str, kind: str, url: str, secret: str, timeout: float) -> Any:
    """The router backend for a stored or new worker."""
    if kind == "openai":
        return OpenAIBackend(name, url, secret or None, read_timeout=timeout)
    return RemoteBackend(name, url, secret, read_timeout=timeout)


class Remote:
    """The app's attached workers (thread-safe); the router is the one that routes to them."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._lock = threading.Lock()
        self._attached: dict[str, Attached] = {}
        self._closed = threading.Event()

    @property
    def router(self) -> Any:
        return self.app.extensions["compute"].router

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._attached)

    def get(self, name: str) -> Attached:
        with self._lock:
            found = self._attached.get(name)
        if found is None:
            raise NotFound(f"no worker named {name!r} is attached", details={"worker": name})
        return found

    def check_name(self, name: str) -> None:
        """Refuse a name already used by an attached worker or the local backend."""
        local = getattr(self.router, "local", None)
        with self._lock:
            taken = name in self._attached or (local is not None and local.name == name)
        if taken:
            from bridge.errors import Conflict

            raise Conflict(f"a backend named {name!r} is attached; detach it or pick another name",
                           details={"field": "name"})

    def attach(
        self, attached: Attached, secret: str, user_id: int | None,
        assignment: Assignment | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Route to it, keep it alive (Colab), persist it; returns its status entry."""
        self.check_name(attached.name)
        attached.runtime.setdefault("started_at", time.time())
        self.router.add_worker(attached.backend)
        with self._lock:
            self._attached[attached.name] = attached
        self._start_keepalive(attached, assignment)
        box = self.app.extensions["secret_box"]
        with self.app.extensions["db"].begin() as conn:
            conn.execute(schema.workers.insert().values(
                name=attached.name, kind=attached.kind, url=attached.url,
                secret_enc=box.encrypt(secret) if secret else None, runtime=attached.runtime,
                created_by=user_id, created_at=utcnow(),
            ))  # fmt: skip
        return self.router.probe_worker(attached.name)  # type: ignore[no-any-return]

    def detach(self, name: str) -> dict[str, Any]:
        """Stop routing to it, stop a worker we launched, release its Colab runtime, forget it."""
        attached = self.get(name)
        answer: dict[str, Any] = {"status": "disconnected", "worker": name, "stopped": False,
                                  "released": None, "warnings": []}
        if attached.runtime.get("launched") and isinstance(attached.backend, RemoteBackend):
            try:  # before the router closes its connections; in-flight answers fail over
                attached.backend.shutdown()
                answer["stopped"] = True
            except BridgeError as exc:
                answer["warnings"].append(f"could not stop the worker: {exc.message}")
        self.router.remove_worker(name)
        with self._lock:
            self._attached.pop(name, None)
        if attached.keepalive is not None:
            attached.keepalive.stop()
        colab = attached.colab
        if colab is not None:
            try:
                if attached.client is None:
                    raise ValidationError("no Google sign-in to release it with")
                attached.client.release(colab["endpoint"])
                answer["released"] = colab["endpoint"]
            except BridgeError as exc:
                answer["warnings"].append(
                    f"Colab runtime {colab['endpoint']} was not released ({exc.message}); "
                    "release it in Colab (Runtime > Disconnect and delete runtime)")
        with contextlib.suppress(Exception):
            attached.backend.close()
        with self.app.extensions["db"].begin() as conn:
            conn.execute(delete(schema.workers).where(schema.workers.c.name == name))
        return answer

    def describe(self, name: str) -> dict[str, Any]:
        """What /system/status adds to a worker: mode, time left (Colab), keep-alive state."""
        with self._lock:
            attached = self._attached.get(name)
        if attached is None:
            return {"time_left": None}
        colab = attached.colab
        extra: dict[str, Any] = {"mode": attached.runtime.get("mode"), "time_left": None}
        if colab is not None or attached.runtime.get("runtime_type") == "colab":
            started = float(attached.runtime.get("started_at") or time.time())
            left = COLAB_SESSION_CAP - (time.time() - started)
            extra["time_left"] = duration(max(0.0, round(left)))
            extra["limits"] = {"session_cap": duration(COLAB_SESSION_CAP),
                               "idle_reclaim": duration(COLAB_IDLE_RECLAIM)}
        if attached.keepalive is not None:
            error = attached.keepalive.last_error
            extra["keepalive"] = {"endpoint": attached.keepalive.assignment.endpoint,
                                  "last_error": error.message if error else None}
        return extra

    def _start_keepalive(self, attached: Attached, assignment: Assignment | None = None) -> None:
        colab = attached.colab
        if colab is None or attached.client is None:
            return
        if assignment is None:  # restored: token unknown, so the first round renews it
            assignment = Assignment(colab["endpoint"], colab.get("proxy_url", ""), "", 0.0,
                                    colab.get("accelerator", "T4"), colab.get("variant", "GPU"))
        interval = google_account.endpoints().keepalive_interval
        attached.keepalive = KeepAlive(attached.client, assignment, interval=interval)
        attached.keepalive.start()

    def restore(self) -> None:
        """Re-attach every stored worker (probes run in the background)."""
        with self.app.extensions["db"].connect() as conn:
            rows = conn.execute(select(schema.workers)).mappings().all()
        box = self.app.extensions["secret_box"]
        for row in rows:
            runtime = dict(row["runtime"] or {})
            try:
                secret = box.decrypt(row["secret_enc"]) if row["secret_enc"] else ""
                backend = build_backend(row["name"], row["kind"], row["url"], secret,
                                        float(runtime.get("timeout") or 60))
                self.router.add_worker(backend)
            except BridgeError as exc:
                log.error("cannot re-attach worker %s: %s", row["name"], exc.message)
                continue
            attached = Attached(row["name"], row["kind"], row["url"], backend, runtime)
            with self._lock:
                self._attached[attached.name] = attached
            if attached.colab is not None:
                self._restore_colab(attached, row["created_by"])
        if rows:
            threading.Thread(target=self._probe_restored, daemon=True).start()

    def _restore_colab(self, attached: Attached, user_id: int | None) -> None:
        colab = attached.colab or {}
        try:
            credentials = google_account.stored_credentials(int(user_id or 0))
            if credentials is None:
                raise ValidationError("no stored Google sign-in")
            client = google_account.colab_client(credentials, colab.get("notebook_hash"))
        except BridgeError as exc:
            log.warning("no keep-alive for %s (%s); sign in again to renew it", attached.name,
                        exc.message)
            return
        attached.client = client
        self._start_keepalive(attached)

    def _probe_restored(self) -> None:
        for name in self.names():
            if self._closed.is_set():
                return
            with contextlib.suppress(Exception):
                self.router.probe_worker(name)

    def close(self) -> None:
        """Stop keep-alive threads (the router closes the backends)."""
        self._closed.set()
        with self._lock:
            attached = list(self._attached.values())
        for item in attached:
            if item.keepalive is not None:
                item.keepalive.stop()


def remote() -> Remote:
    return current_app.extensions["remote"]  # type: ignore[no-any-return]


def init_app(app: Flask) -> None:
    """Make the registry, re-attach stored workers, and stop keep-alives when the app shuts down."""
    registry = Remote(app)
    app.extensions["remote"] = registry
    with app.app_context():
        registry.restore()
    stop = app.extensions["compute"].stop  # set by local_api.shutdown()
    threading.Thread(target=lambda: (stop.wait(), registry.close()), daemon=True,
                     name="remote-shutdown").start()
