"""Two `bridge serve` processes on one real PostgreSQL and one real Redis, sharing work: a
worker process attached through one answers requests sent to the other, and a download whose
instance is killed mid-file is taken over by the other (one job, completed, seen from both).

Bounded: the other instance learns of the worker within one router probe interval (30 s) and
takes the download over once its lease lapses (download_leases.TTL, 15 s); both waits overlap.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from local_api.models.download_leases import TTL
from tests.support.hub_standin import HubStandin
from tests.support.live_process import kill_all, serve
from tests.support.servers import free_port

API = "/api/v1"
SECRET = "a-worker-secret-of-some-length"
PROBE_INTERVAL = 30.0  # the router's default: how soon an instance sees a worker attached


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[str]:
    """A real worker process (`python -m colab_runtime.worker`, echo backend) on loopback."""
    ready = tmp_path / "worker.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "colab_runtime.worker", "--backend", "echo",
         "--port", str(free_port()), "--ready-file", str(ready)],
        env={**os.environ, "BRIDGE_WORKER_SECRET": SECRET},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _until(ready.exists, 60, "the worker never got ready")
        yield str(json.loads(ready.read_text())["url"])
    finally:
        kill_all(process)  # type: ignore[arg-type]


def _until(check: Callable[[], Any], seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, what
        time.sleep(0.3)


def _login(url: str) -> dict[str, str]:
    httpx.post(f"{url}/api/auth/register", timeout=30, json={
        "username": "admin", "email": "admin@example.org", "password": "correct horse"})
    token = httpx.post(f"{url}{API}/auth/login", timeout=30, json={
        "username": "admin", "password": "correct horse"}).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


def _status(url: str, headers: dict[str, str]) -> dict[str, Any]:
    return dict(httpx.get(f"{url}{API}/models/big/status", headers=headers, timeout=30).json())


def _routed(url: str, headers: dict[str, str]) -> bool:
    status = httpx.get(f"{url}{API}/system/status", headers=headers, timeout=30).json()
    return any(b["name"] == "gpu1" and b["healthy"] for b in status["backends"])


def test_two_instances_share_a_worker_and_take_a_download_over(
        tmp_path: Path, postgres_url: str, redis_url: str, hub: HubStandin,
        worker: str) -> None:
    data = os.urandom(6_000_000)
    url = hub.add_file("big.bin", data)
    hub.delay = 0.05  # ~5 s for the whole file: A is killed well before the end
    env = {"DATABASE_URL": postgres_url, "BRIDGE_REDIS_URL": redis_url,
           "BRIDGE_JWT_SECRET": "j" * 40, "BRIDGE_SECRET_KEY": "s" * 40,
           "BRIDGE_MODELS_HOME": str(tmp_path / "models"),  # shared: B resumes A's part
           "BRIDGE_RATELIMIT_ENABLED": "0"}  # the polling below is not what is tested
    with serve(tmp_path / "a", env=env) as (process_a, a), serve(tmp_path / "b", env=env) as (
            _b, b):
        headers = _login(a)
        attached = httpx.post(f"{a}{API}/system/colab/connect", headers=headers, timeout=60,
                              json={"worker_url": worker, "worker_secret": SECRET,
                                    "name": "gpu1"})
        assert attached.status_code == 200, attached.text
        attached_at = time.monotonic()
        started = httpx.post(f"{a}{API}/models/download", headers=headers, timeout=30, json={
            "model_id": "big", "url": url, "sha256": hashlib.sha256(data).hexdigest()})
        assert started.status_code == 202, started.text

        seen = _until(lambda: (s := _status(b, headers))["progress"] >= 0.1 and s, 30,
                      "B never saw A's progress")
        assert seen["status"] == "downloading"
        kill_all(process_a)  # A dies mid-file: its lease is no longer renewed
        killed_at = time.monotonic()
        hub.delay = 0.0

        done = _until(lambda: (s := _status(b, headers))["status"] != "downloading" and s,
                      TTL + 30, "B never took the download over")
        assert done["status"] == "completed", done
        assert time.monotonic() - killed_at < TTL + 25
        stored = tmp_path / "models"
        assert any(p.is_file() and p.stat().st_size == len(data) for p in stored.rglob("*"))

        # B routes to the worker attached through A, within one probe interval
        _until(lambda: _routed(b, headers), PROBE_INTERVAL + 20, "B never routed to gpu1")
        assert time.monotonic() - attached_at < PROBE_INTERVAL + 20
        reply = httpx.post(f"{b}{API}/chat/completion", headers=headers, timeout=60, json={
            "prompt": "echo these words", "parameters": {"max_tokens": 8}})
        assert reply.status_code == 200, reply.text
        assert reply.json()["backend"] == "gpu1"
        assert "echo these words" in reply.json()["completion"]

    with serve(tmp_path / "a", env=env) as (_again, a):  # A restarted sees the job complete
        assert _status(a, headers)["status"] == "completed"
