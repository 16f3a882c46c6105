"""Download jobs claimed once across instances (SQLite and a real PostgreSQL): a lapsed lease
is taken over, a live one is left alone, one lease has one holder however many race for it."""

from __future__ import annotations

import threading
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import insert, select

from local_api.models import download_leases as leases
from local_api.storage import schema
from local_api.timeutil import utcnow

pytestmark = pytest.mark.usefixtures("database_url")


def _job(app: Flask, job_id: str, owner: str | None, lease_left: float) -> None:
    now = utcnow()
    with app.extensions["db"].begin() as conn:
        conn.execute(insert(schema.download_jobs).values(
            id=job_id, model_id=f"m-{job_id}", source="url", location="http://x/m.gguf",
            status="downloading", bytes_done=3 * 2**30, bytes_total=7 * 2**30,
            created_at=now, updated_at=now, claimed_by=owner,
            lease_expires_at=now + timedelta(seconds=lease_left)))


def _holder(app: Flask, job_id: str) -> Any:
    jobs = schema.download_jobs
    with app.extensions["db"].connect() as conn:
        return conn.execute(select(jobs.c.claimed_by, jobs.c.bytes_done)
                            .where(jobs.c.id == job_id)).one()


def test_a_lapsed_lease_is_taken_over_and_a_live_one_left(app: Flask) -> None:
    _job(app, "dead", "instance-a", -1)  # its instance stopped renewing
    _job(app, "alive", "instance-a", 60)
    resumed: list[str] = []
    keeper = leases.LeaseKeeper(
        app.extensions["db"], "instance-b", running=lambda: set(resumed),
        takeover=lambda: [SimpleNamespace(id="dead"), SimpleNamespace(id="alive")],
        resume=lambda job: resumed.append(job.id))
    keeper.tick()
    assert resumed == ["dead"]
    assert tuple(_holder(app, "dead")) == ("instance-b", 3 * 2**30)  # 64-bit counts kept
    assert _holder(app, "alive")[0] == "instance-a"
    keeper.tick()  # running here now: renewed, not resumed twice
    assert resumed == ["dead"]


def test_one_holder_when_instances_race_for_a_lapsed_lease(app: Flask) -> None:
    _job(app, "j", "gone", -1)
    barrier, wins = threading.Barrier(4), []

    def contend(name: str) -> None:
        barrier.wait()
        if leases.claim(app.extensions["db"], "j", name):
            wins.append(name)

    threads = [threading.Thread(target=contend, args=(f"i{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(wins) == 1 and _holder(app, "j")[0] == wins[0]


def test_the_running_instance_renews_its_lease(app: Flask) -> None:
    _job(app, "mine", "me", 1)
    keeper = leases.LeaseKeeper(app.extensions["db"], "me", running=lambda: {"mine"},
                                takeover=list, resume=lambda _job: None)
    keeper.tick()
    jobs = schema.download_jobs
    with app.extensions["db"].connect() as conn:
        expires = conn.execute(select(jobs.c.lease_expires_at).where(jobs.c.id == "mine")
                               ).scalar_one()
    if expires.tzinfo is None:  # SQLite hands back naive UTC
        expires = expires.replace(tzinfo=utcnow().tzinfo)
    assert expires > utcnow() + timedelta(seconds=leases.TTL - 5)
