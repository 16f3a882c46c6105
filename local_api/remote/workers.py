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
from local_api.models.download_leases import owner_id
from local_api.remote import google_account, lifecycle, shared, stored
from local_api.remote.lifecycle import Attached, build_backend  # noqa: F401 (re-exported)
from local_api.storage import schema
from local_api.timeutil import utcnow

log = logging.getLogger("compute_bridge.remote")


class Remote:
    """The app's attached workers (thread-safe); the router is the one that routes to them."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._lock = threading.Lock()
        self._attached: dict[str, Attached] = {}
        self._busy: set[str] = set()  # being attached or detached here: sync leaves them be
        self.stamps: dict[str, Any] = {}  # name -> its row's created_at, as last seen
        self._closed = threading.Event()
        self.lost = lifecycle.Lost()
        self.shared = shared.Shared(self, owner_id(app.config["SETTINGS"]))

    @property
    def router(self) -> Any:
        return self.app.extensions["compute"].router

    def all(self) -> list[Attached]:
        with self._lock:
            return list(self._attached.values())

    def drop(self, attached: Attached) -> None:
        """Stop routing to it and close its connections (its row stays as it is)."""
        self._forget(attached, unroute=True)
        with contextlib.suppress(Exception):
            attached.backend.close()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

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
            taken = name in self._attached or name in self._busy
            if taken or (local is not None and local.name == name):
                raise Conflict(f"a backend named {name!r} is attached; detach it or pick "
                               "another name", details={"field": "name"})
            if reserve is not None:
                self._attached[name] = reserve
                self._busy.add(name)

    def attach(self, attached: Attached, secret: str, user_id: int | None) -> dict[str, Any]:
        """Persist it, route to it, keep it alive (Colab: its started keep-alive, or a new one);
        returns its status entry.

        The row is written first (over a stale row of the same name); on any failure nothing
        of it stays: not routed, not listed, no keep-alive, no row. Other instances route to
        it within one probe interval (shared.Shared.sync).
        """
        self.check_name(attached.name, reserve=attached)
        attached.runtime.setdefault("started_at", time.time())
        routed = False
        try:
            self._store(attached, secret, user_id)
            self.router.add_worker(attached.backend)
            routed = True
            self.start_keepalive(attached)
            return self.router.probe_worker(attached.name)  # type: ignore[no-any-return]
        except BaseException:
            self._forget(attached, unroute=routed)
            with contextlib.suppress(Exception):
                self.delete_row(attached.name)
            raise
        finally:
            self.settled(attached.name)

    def busy(self, name: str) -> bool:
        """Reserve ``name`` for a detach here (False when it is being attached or detached)."""
        with self._lock:
            if name in self._busy:
                return False
            self._busy.add(name)
            return True

    def is_busy(self, name: str) -> bool:
        return name in self._busy  # a set's membership test is atomic

    def settled(self, name: str) -> None:
        with self._lock:
            self._busy.discard(name)

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
        self.shared.changed()

    def _forget(self, attached: Attached, *, unroute: bool) -> None:
        """Stop routing to it (closing its connections), drop it, stop its keep-alive."""
        with self._lock:
            if self._attached.get(attached.name) is attached:
                del self._attached[attached.name]
                self.stamps.pop(attached.name, None)
        if attached.keepalive is not None:
            attached.keepalive.stop()
        if unroute:
            with contextlib.suppress(NotFound):
                self.router.remove_worker(attached.name)

    def delete_row(self, name: str) -> bool:
        with self.app.extensions["db"].begin() as conn:
            gone = conn.execute(delete(schema.workers).where(schema.workers.c.name == name))
        self.shared.changed()
        return bool(gone.rowcount)

    def _stored_names(self) -> list[str]:
        with self.app.extensions["db"].connect() as conn:
            return [str(r[0]) for r in conn.execute(select(schema.workers.c.name))]

    def detach(self, name: str) -> dict[str, Any]:
        """Stop routing to it, stop a worker we launched, release its Colab runtime, forget it."""
        answer: dict[str, Any] = {"status": "disconnected", "worker": name, "stopped": False,
                                  "released": None, "warnings": []}
        if not self.busy(name):
            raise Conflict(f"worker {name!r} is being attached or detached; try again",
                           details={"worker": name})
        try:
            return self._detach(name, answer)
        finally:
            self.settled(name)

    def _detach(self, name: str, answer: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            attached = self._attached.get(name)
        if attached is None:
            return stored.detach_stored(self, name, answer)
        if attached.runtime.get("launched") and isinstance(attached.backend, RemoteBackend):
            try:  # before the router closes its connections; in-flight answers fail over
                attached.backend.shutdown()
                answer["stopped"] = True
            except BridgeError as exc:
                answer["warnings"].append(f"could not stop the worker: {exc.message}")
        self._forget(attached, unroute=True)
        colab = attached.colab
        if colab is not None:
            stored.release(attached.client, colab, answer)
        with contextlib.suppress(Exception):
            attached.backend.close()
        self.delete_row(name)
        return answer

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

    def start_keepalive(self, attached: Attached) -> None:
        colab = attached.colab
        if colab is None or attached.client is None:
            return
        self.shared.track(attached)  # its requests here count for the holder's idle check
        if not self.shared.holds:  # another instance keeps Colab runtimes alive
            if attached.keepalive is not None:
                attached.keepalive.stop()
                attached.keepalive = None
            return
        if attached.keepalive is None:
            attached.keepalive = google_account.keeper(attached.client, colab)
        lifecycle.watch(attached, google_account.endpoints().clock, self._gone)
        self.shared.last_used(attached)
        if attached.keepalive.state != "gone" and not attached.keepalive.started:
            attached.keepalive.start()

    def _gone(self, attached: Attached, reason: str) -> None:
        """Colab took the runtime back: detach the worker (requests fall back locally)."""
        colab = attached.colab or {}
        log.warning("Colab runtime %s of worker %s is gone, worker detached: %s",
                    colab.get("endpoint"), attached.name, reason)
        reserved = self.busy(attached.name)
        try:
            self._forget(attached, unroute=True)
            with contextlib.suppress(Exception):
                attached.backend.close()
            with contextlib.suppress(Exception):
                self.delete_row(attached.name)
        finally:
            if reserved:
                self.settled(attached.name)
        self.lost.add(attached.name, str(colab.get("endpoint")), reason,
                      getattr(attached.keepalive, "gone_kind", None) or "lost")

    def restore(self, *, probe: bool = True) -> list[str]:
        """Re-attach every stored worker not attached yet; returns their names (``probe``:
        probed in the background)."""
        return stored.restore(self, probe=probe)

    def resync(self) -> dict[str, list[str]]:
        return stored.resync(self)

    def reserve_stored(self, name: str) -> bool:
        """Reserve a stored worker's name to re-attach it (False: attached or busy here)."""
        with self._lock:
            if name in self._attached or name in self._busy:
                return False
            self._busy.add(name)
            return True

    def adopt(self, attached: Attached, stamp: Any) -> None:
        """Take a re-attached worker in (its name reserved; its backend routed)."""
        with self._lock:
            self._attached[attached.name] = attached
            self.stamps[attached.name] = stamp

    def close(self) -> None:
        """Stop keep-alives and the sync, give the lease up (the router closes backends)."""
        self._closed.set()
        self.shared.close()
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
    registry.shared.hold()  # before restore: whether this instance keeps runtimes alive
    with app.app_context():
        registry.restore()
    registry.shared.start()
