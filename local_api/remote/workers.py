"""Attached remote compute: router workers persisted in `workers`, re-attached when the app starts.

A Colab worker also holds its control-plane client and a KeepAlive thread (keep-alive every
~60 s, token renewal, reconcile with the assignment list; lifecycle.py). Secrets (worker
secret, API key, a URL's user:password) are stored sealed and never leave it in an answer.
After a database restore, ``resync(app)`` makes the attached workers match the database again.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any

from flask import Flask, current_app
from sqlalchemy import delete, select

from bridge.backends.remote import RemoteBackend
from bridge.errors import BridgeError, Conflict, NotFound
from bridge.urls import has_userinfo, split_userinfo
from colab_runtime.colab import ColabClient
from local_api.remote import google_account, lifecycle
from local_api.remote.lifecycle import Attached, build_backend
from local_api.storage import schema
from local_api.timeutil import utcnow

log = logging.getLogger("compute_bridge.remote")


class Remote:
    """The app's attached workers (thread-safe); the router is the one that routes to them."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._lock = threading.Lock()
        self._attached: dict[str, Attached] = {}
        self._closed = threading.Event()
        self.lost = lifecycle.Lost()

    @property
    def router(self) -> Any:
        return self.app.extensions["compute"].router

    def names(self, *, stored: bool = False) -> list[str]:
        """Attached workers' names; ``stored`` adds rows not attached (unreadable, restored)."""
        with self._lock:
            found = set(self._attached)
        return sorted(found | set(self._stored_names()) if stored else found)

    def get(self, name: str) -> Attached:
        with self._lock:
            found = self._attached.get(name)
        if found is None:
            raise NotFound(f"no worker named {name!r} is attached", details={"worker": name})
        return found

    def check_name(self, name: str, *, reserve: Attached | None = None) -> None:
        """Refuse a name already used by an attached worker or the local backend; ``reserve``
        takes the name for that worker in the same step (a concurrent attach of it fails)."""
        local = getattr(self.router, "local", None)
        with self._lock:
            if name in self._attached or (local is not None and local.name == name):
                raise Conflict(f"a backend named {name!r} is attached; detach it or pick "
                               "another name", details={"field": "name"})
            if reserve is not None:
                self._attached[name] = reserve

    def attach(self, attached: Attached, secret: str, user_id: int | None) -> dict[str, Any]:
        """Persist it, route to it, keep it alive (Colab: its started keep-alive, or a new one);
        returns its status entry.

        The row is written first (over a stale row of the same name); on any failure nothing
        of it stays: not routed, not listed, no keep-alive, no row.
        """
        self.check_name(attached.name, reserve=attached)
        attached.runtime.setdefault("started_at", time.time())
        routed = False
        try:
            self._store(attached, secret, user_id)
            self.router.add_worker(attached.backend)
            routed = True
            self._start_keepalive(attached)
            return self.router.probe_worker(attached.name)  # type: ignore[no-any-return]
        except BaseException:
            self._forget(attached, unroute=routed)
            with contextlib.suppress(Exception):
                self._delete_row(attached.name)
            raise

    def _store(self, attached: Attached, secret: str, user_id: int | None) -> None:
        """Write its row, replacing a stale row of that name (one not attached)."""
        box = self.app.extensions["secret_box"]
        runtime = dict(attached.runtime)
        if has_userinfo(attached.url):  # user:password only sealed, never in the url column
            runtime["url_enc"] = box.encrypt(attached.url)
        table = schema.workers
        with self.app.extensions["db"].begin() as conn:
            if conn.execute(delete(table).where(table.c.name == attached.name)).rowcount:
                log.warning("replacing the stored record of worker %s (it was not attached)",
                            attached.name)
            conn.execute(table.insert().values(
                name=attached.name, kind=attached.kind, url=split_userinfo(attached.url)[0],
                secret_enc=box.encrypt(secret) if secret else None, runtime=runtime,
                created_by=user_id, created_at=utcnow(),
            ))  # fmt: skip

    def _forget(self, attached: Attached, *, unroute: bool) -> None:
        """Stop routing to it (closing its connections), drop it, stop its keep-alive."""
        with self._lock:
            if self._attached.get(attached.name) is attached:
                del self._attached[attached.name]
        if attached.keepalive is not None:
            attached.keepalive.stop()
        if unroute:
            with contextlib.suppress(NotFound):
                self.router.remove_worker(attached.name)

    def _delete_row(self, name: str) -> bool:
        with self.app.extensions["db"].begin() as conn:
            return bool(conn.execute(
                delete(schema.workers).where(schema.workers.c.name == name)).rowcount)

    def _stored_names(self) -> list[str]:
        with self.app.extensions["db"].connect() as conn:
            return [str(r[0]) for r in conn.execute(select(schema.workers.c.name))]

    def detach(self, name: str) -> dict[str, Any]:
        """Stop routing to it, stop a worker we launched, release its Colab runtime, forget it."""
        answer: dict[str, Any] = {"status": "disconnected", "worker": name, "stopped": False,
                                  "released": None, "warnings": []}
        with self._lock:
            attached = self._attached.get(name)
        if attached is None:
            return self._detach_stored(name, answer)
        if attached.runtime.get("launched") and isinstance(attached.backend, RemoteBackend):
            try:  # before the router closes its connections; in-flight answers fail over
                attached.backend.shutdown()
                answer["stopped"] = True
            except BridgeError as exc:
                answer["warnings"].append(f"could not stop the worker: {exc.message}")
        self._forget(attached, unroute=True)
        colab = attached.colab
        if colab is not None:
            self._release(attached.client, colab, answer)
        with contextlib.suppress(Exception):
            attached.backend.close()
        self._delete_row(name)
        return answer

    def _detach_stored(self, name: str, answer: dict[str, Any]) -> dict[str, Any]:
        """A row that is not attached (unreadable secret, a restored database): remove it."""
        with self.app.extensions["db"].connect() as conn:
            row = conn.execute(select(schema.workers).where(schema.workers.c.name == name)
                               ).mappings().first()
        if row is None:
            raise NotFound(f"no worker named {name!r} is attached", details={"worker": name})
        colab = (row["runtime"] or {}).get("colab")
        if isinstance(colab, dict):
            self._release(self._colab_client(colab, row["created_by"]), colab, answer)
        self._delete_row(name)
        answer["warnings"].append("it was stored but not attached; its record was removed")
        return answer

    def _release(self, client: ColabClient | None, colab: dict[str, Any],
                 answer: dict[str, Any]) -> None:
        warning = google_account.release_runtime(client, colab["endpoint"])
        if warning:
            answer["warnings"].append(warning)
        else:
            answer["released"] = colab["endpoint"]

    def describe(self, name: str) -> dict[str, Any]:
        """What /system/status adds to a worker: mode, time left (Colab), keep-alive state."""
        with self._lock:
            attached = self._attached.get(name)
        if attached is None:
            return {"time_left": None}
        extra: dict[str, Any] = {"mode": attached.runtime.get("mode"), "time_left": None}
        if attached.colab is not None or attached.runtime.get("runtime_type") == "colab":
            fit = (attached.colab or {}).get("fit")
            extra.update(google_account.colab_limits(attached.runtime.get("started_at"), fit))
        keeper = attached.keepalive
        if keeper is not None:
            error = keeper.last_error
            extra["keepalive"] = {"endpoint": keeper.assignment.endpoint, "state": keeper.state,
                                  "last_error": error.message if error else None}
        return extra

    def _start_keepalive(self, attached: Attached) -> None:
        colab = attached.colab
        if colab is None or attached.client is None:
            return
        if attached.keepalive is None:
            attached.keepalive = google_account.keeper(attached.client, colab)
        lifecycle.watch(attached, google_account.endpoints().clock, self._gone)
        if attached.keepalive.state != "gone" and not attached.keepalive.started:
            attached.keepalive.start()

    def _gone(self, attached: Attached, reason: str) -> None:
        """Colab took the runtime back: detach the worker (requests fall back locally)."""
        colab = attached.colab or {}
        log.warning("Colab runtime %s of worker %s is gone, worker detached: %s",
                    colab.get("endpoint"), attached.name, reason)
        self._forget(attached, unroute=True)
        with contextlib.suppress(Exception):
            attached.backend.close()
        with contextlib.suppress(Exception):
            self._delete_row(attached.name)
        self.lost.add(attached.name, str(colab.get("endpoint")), reason)

    def restore(self) -> None:
        """Re-attach every stored worker not attached yet (probes run in the background)."""
        with self.app.extensions["db"].connect() as conn:
            rows = conn.execute(select(schema.workers)).mappings().all()
        box = self.app.extensions["secret_box"]
        for row in rows:
            if row["name"] in self.names():
                continue
            runtime = dict(row["runtime"] or {})
            try:
                secret = box.decrypt(row["secret_enc"]) if row["secret_enc"] else ""
                sealed = runtime.pop("url_enc", None)
                url = box.decrypt(sealed) if sealed else row["url"]
                backend = build_backend(row["name"], row["kind"], url, secret,
                                        float(runtime.get("timeout") or 60))
                self.router.add_worker(backend)
            except BridgeError as exc:
                log.error("cannot re-attach worker %s: %s", row["name"], exc.message)
                continue
            attached = Attached(row["name"], row["kind"], url, backend, runtime)
            with self._lock:
                self._attached[attached.name] = attached
            if attached.colab is not None:
                attached.client = self._colab_client(attached.colab, row["created_by"])
                self._start_keepalive(attached)
        if rows:
            threading.Thread(target=self._probe_restored, daemon=True).start()

    def resync(self) -> dict[str, list[str]]:
        """After a database restore: forget the attached workers, re-attach the stored ones.

        A worker attached now but absent from the restored database is no longer routed to
        (it keeps running; its Colab runtime is no longer kept alive).
        """
        with self._lock:
            before = list(self._attached.values())
        for attached in before:
            self._forget(attached, unroute=True)
        with self.app.app_context():
            self.restore()
        after = self.names()
        dropped = sorted(a.name for a in before if a.name not in after)
        for name in dropped:
            log.warning("worker %s is not in the restored database: no longer routed", name)
        return {"attached": after, "dropped": dropped}

    def _colab_client(self, colab: dict[str, Any], user_id: int | None) -> ColabClient | None:
        try:
            return google_account.colab_client_for(user_id, colab.get("notebook_hash"))
        except BridgeError as exc:
            log.warning("no keep-alive or release for Colab runtime %s (%s); sign in again",
                        colab.get("endpoint"), exc.message)
            return None

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


def resync(app: Flask) -> dict[str, list[str]]:
    """Re-read the attached workers from the database (call it after restoring a backup)."""
    registry: Remote = app.extensions["remote"]
    return registry.resync()


def init_app(app: Flask) -> None:
    """Make the registry and re-attach stored workers (local_api.shutdown() closes it)."""
    registry = Remote(app)
    app.extensions["remote"] = registry
    with app.app_context():
        registry.restore()
