"""Attached workers shared by every API instance on one database, and Colab keep-alives run by
one of them at a time.

A worker is attached once (its row in ``workers``, the secret sealed with the instances'
shared key); every instance re-reads the table once per probe interval (the router's
``probe_interval``), attaching what another instance connected and dropping what it
disconnected or replaced. The keep-alive of Colab runtimes (and with it the lifecycle checks:
the assignment list, a runtime taken back) runs only on the holder of the ``colab-keepalive``
lease (storage.leases), renewed every ``TTL / 3`` seconds; when its instance dies, another
takes the lease once it lapses and starts the keep-alives. At each sync every instance also
shares its workers' last request (``workers.used_at``): the holder's idle check counts
requests sent through any instance. With Redis (BRIDGE_REDIS_URL) an attach or detach is also
announced (``events.notice("workers")``) and every instance syncs at once, not at its next round.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any

from sqlalchemy import or_, select, update

from local_api.remote import google_account
from local_api.storage import schema
from local_api.storage.leases import Lease

Remote = Any  # local_api.remote.workers.Remote (not imported: it imports this module)

KEEPALIVE_LEASE = "colab-keepalive"
WORKERS_NOTICE = "workers"  # events.notice name: a worker row was written or removed
TTL = 30.0  # seconds the keep-alive lease lasts unrenewed (a Colab keep-alive is every ~60 s)
log = logging.getLogger("compute_bridge.remote")


class Shared:
    """The thread that syncs a registry's workers with the database and holds the lease."""

    def __init__(self, registry: Remote, owner: str) -> None:
        self.registry = registry
        self.lease = Lease(registry.app.extensions["db"], KEEPALIVE_LEASE, owner)
        self.holds = False  # this instance runs the Colab keep-alives
        self._tracked: dict[str, Any] = {}  # name -> the Attached whose requests are noted
        self._used: dict[str, float] = {}  # name -> its last request here (keep-alive clock)
        self._shared_used: dict[str, float] = {}  # name -> its last request on any instance
        self._stop = threading.Event()
        self._wake = threading.Event()  # a notice: sync now
        self._thread = threading.Thread(target=self._loop, name="remote-shared", daemon=True)
        registry.app.extensions["events"].on_notice(WORKERS_NOTICE, self._wake.set)

    def start(self) -> None:
        self._thread.start()

    def hold(self) -> bool:
        """Take or renew the keep-alive lease; starts the keep-alives when it is gained and
        stops them when it is lost (another instance took it: ours had lapsed)."""
        try:
            held = self.lease.acquire(TTL)
        except Exception:  # the database away: we cannot tell; another may take it over
            log.warning("keep-alive lease: renewal failed", exc_info=True)
            held = False
        was, self.holds = self.holds, held
        if held != was:
            log.info("Colab keep-alives %s on this instance", "run" if held else "stopped")
            for attached in self.registry.all():
                self.registry.start_keepalive(attached)
        return held

    def sync(self) -> None:
        """Attach the stored workers not attached here; drop the ones whose row is gone or
        was replaced (detached or re-attached through another instance)."""
        settled = [a for a in self.registry.all() if not self.registry.is_busy(a.name)]
        table = schema.workers
        with self.registry.app.extensions["db"].begin() as conn:  # after: rows of those
            rows = conn.execute(select(table.c.name, table.c.created_at, table.c.used_at)).all()
            self._share_use(conn, {name: used for name, _, used in rows})
        stored = {name: created for name, created, _ in rows}
        for attached in settled:
            name = attached.name
            if self.registry.is_busy(name):
                continue  # being attached or detached here
            known = self.registry.stamps.setdefault(name, stored.get(name))
            if name not in stored or known != stored[name]:
                log.info("worker %s was detached or replaced elsewhere: not routed here", name)
                self.registry.drop(attached)
        for name in self.registry.restore(probe=False):
            log.info("worker %s was attached elsewhere: routed here too", name)
            with contextlib.suppress(Exception):
                self.registry.router.probe_worker(name)

    def changed(self) -> None:
        """A worker row was written or removed here: every instance syncs now (with Redis;
        in one process the other instances' next round finds it)."""
        with contextlib.suppress(Exception):  # the notice is a shortcut, the sync the rule
            self.registry.app.extensions["events"].notice(WORKERS_NOTICE)

    def track(self, attached: Any) -> None:
        """Note every request a Colab worker gets on this instance (once per attached one)."""
        if self._tracked.get(attached.name) is attached:
            return
        clock, name, original = google_account.endpoints().clock, attached.name, \
            attached.backend.generate

        def generate(request: Any) -> Any:
            self._used[name] = clock()
            return original(request)

        setattr(attached.backend, "generate", generate)  # noqa: B010 (on purpose, as watch)
        self._tracked[name] = attached

    def last_used(self, attached: Any) -> None:
        """The holder's keep-alive counts requests sent through any instance as use."""
        keeper, name = attached.keepalive, attached.name
        local = keeper.last_used

        def used() -> float:
            return max(local() if local is not None else 0.0, self._used.get(name, 0.0),
                       self._shared_used.get(name, 0.0))

        keeper.last_used = used

    def _share_use(self, conn: Any, stored: dict[str, float | None]) -> None:
        """Publish this instance's newer last uses; learn the others' (one sync round)."""
        table = schema.workers
        for name, when in list(self._used.items()):
            if stored.get(name) is None or when > (stored[name] or 0.0):
                conn.execute(update(table).where(table.c.name == name, or_(
                    table.c.used_at.is_(None), table.c.used_at < when)).values(used_at=when))
                stored[name] = when
        self._shared_used = {k: v for k, v in stored.items() if v is not None}

    def _loop(self) -> None:
        due_sync = due_lease = 0.0
        while True:
            every = float(getattr(self.registry.router, "probe_interval", 30.0))
            now = time.monotonic()
            try:
                with self.registry.app.app_context():  # keep-alives read the app's settings
                    if now >= due_lease:
                        due_lease = now + TTL / 3
                        self.hold()
                    if now >= due_sync:
                        due_sync = now + every
                        self.sync()
            except Exception:  # the database away for a moment: try again next round
                log.warning("attached workers: sync failed", exc_info=True)
            woke = self._wake.wait(max(0.05, min(due_sync, due_lease) - time.monotonic()))
            if self._stop.is_set():
                return
            if woke:
                self._wake.clear()
                due_sync = 0.0

    def halt(self) -> None:
        """Stop the thread, keeping the lease (as a dead instance would: it lapses)."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    def close(self) -> None:
        """Stop the thread and give the lease up, so another instance takes it at once."""
        self.halt()
        if self.holds:
            self.holds = False
            with contextlib.suppress(Exception):
                self.lease.release()

