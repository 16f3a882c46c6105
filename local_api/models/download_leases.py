"""Download jobs run once across API instances: a lease on the job's row (``claimed_by``,
``lease_expires_at``), renewed while this instance runs it, taken over once it lapses.

Every instance sees every job's progress (the row); only the lease holder fetches. An instance
that dies stops renewing; within ``TTL`` seconds another one claims the job and resumes it from
its plan (the partial files of a shared model store, else from the start).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, and_, or_, update

from bridge.config import Settings
from bridge.downloads.jobs import ACTIVE
from local_api.storage import schema
from local_api.timeutil import utcnow

TTL = 15.0  # seconds a lease lasts without renewal (renewed every TTL / 3)
log = logging.getLogger("compute_bridge.downloads")


def owner_id(settings: Settings) -> str:
    """This instance's name in lease rows: BRIDGE_INSTANCE_ID, else host, port and data
    directory (a restarted instance reclaims its own jobs at once), plus the process id when
    gunicorn runs several workers (each is its own claimant)."""
    base = settings.instance_id or f"{socket.gethostname()}:{settings.port}:{settings.home}"
    base = base[-48:]
    return f"{base}#{os.getpid()}" if settings.workers > 1 else base


def lease_values(owner: str, status: str) -> dict[str, Any]:
    """What a job's row records about its lease when this instance saves it."""
    if status in ACTIVE:
        return {"claimed_by": owner, "lease_expires_at": utcnow() + timedelta(seconds=TTL)}
    return {"lease_expires_at": None}


def claim(db: Engine, job_id: str, owner: str) -> bool:
    """Take the job's lease if it is free, lapsed or already ours; True when we hold it."""
    jobs, now = schema.download_jobs, utcnow()
    with db.begin() as conn:
        taken = conn.execute(
            update(jobs)
            .where(jobs.c.id == job_id, jobs.c.status.in_(ACTIVE), or_(
                jobs.c.claimed_by.is_(None), jobs.c.claimed_by == owner,
                jobs.c.lease_expires_at.is_(None), jobs.c.lease_expires_at < now))
            .values(claimed_by=owner, lease_expires_at=now + timedelta(seconds=TTL))
        )
    return bool(taken.rowcount == 1)


class LeaseKeeper:
    """Renews this instance's leases and takes over lapsed ones, every ``TTL / 3`` seconds."""

    def __init__(self, db: Engine, owner: str, running: Callable[[], set[str]],
                 takeover: Callable[[], list[Any]], resume: Callable[[Any], None]) -> None:
        self.db, self.owner = db, owner
        self._running, self._takeover, self._resume = running, takeover, resume
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="download-leases", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def tick(self) -> None:
        jobs = schema.download_jobs
        mine = self._running()
        if mine:
            with self.db.begin() as conn:
                conn.execute(update(jobs).where(and_(
                    jobs.c.id.in_(mine), jobs.c.claimed_by == self.owner,
                )).values(lease_expires_at=utcnow() + timedelta(seconds=TTL)))
        for job in self._takeover():
            if job.id not in mine and claim(self.db, job.id, self.owner):
                log.info("download %s: lease lapsed; resuming it here", job.id)
                self._resume(job)

    def _loop(self) -> None:
        while not self._stop.wait(TTL / 3):
            try:
                self.tick()
            except Exception:  # the database away for a moment: try again next round
                log.warning("download leases: renewal failed", exc_info=True)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
