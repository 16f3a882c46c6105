"""Cheap authenticated requests on `bridge serve`: gunicorn vs werkzeug's server, and
PostgreSQL vs SQLite, at 1 and 16 clients (keep-alive connections); requests/s and p99."""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx

from tests.support.live_process import serve
from tests.support.servers import running_postgres

PATH = "/api/v1/auth/session"  # token checked (signature, revocation row), user row read
PER_CLIENT = {1: 400, 16: 60}


def _measure(url: str, headers: dict[str, str], clients: int) -> tuple[float, float]:
    latencies: list[float] = []
    lock = threading.Lock()

    def run() -> None:
        mine = []
        with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
            http.get(PATH)  # connect first
            for _ in range(PER_CLIENT[clients]):
                started = time.perf_counter()
                assert http.get(PATH).status_code == 200
                mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=run) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    p99 = statistics.quantiles(latencies, n=100)[98] * 1000
    return len(latencies) / elapsed, p99


@contextmanager
def _service(home: Path, server: str, database_url: str) -> Iterator[tuple[str, dict[str, str]]]:
    env = {"BRIDGE_RATELIMIT_ENABLED": "0", "DATABASE_URL": database_url}
    with serve(home, "--server", server, env=env) as (_process, url):
        body = {"username": "bench", "email": "b@example.org", "password": "correct horse"}
        httpx.post(f"{url}/api/auth/register", json=body, timeout=60)
        token = httpx.post(f"{url}/api/v1/auth/login", timeout=60, json={
            "username": "bench", "password": "correct horse"}).json()["access_token"]
        yield url, {"Authorization": f"Bearer {token}"}


def main() -> None:
    results: dict[tuple[str, str, int], tuple[float, float]] = {}
    with ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        try:
            admin = stack.enter_context(running_postgres())
        except FileNotFoundError as exc:
            print(f"(PostgreSQL rows skipped: {exc})")
            admin = ""
        setups = [("werkzeug", "sqlite"), ("gunicorn", "sqlite")]
        if admin:
            import psycopg

            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute("CREATE DATABASE bench")
            setups.append(("gunicorn", "postgresql"))
        for server, database in setups:
            url_db = admin.rsplit("/", 1)[0] + "/bench" if database == "postgresql" else ""
            with _service(root / f"{server}-{database}", server, url_db) as (url, headers):
                for clients in (1, 16):
                    rps, p99 = results[(server, database, clients)] = _measure(
                        url, headers, clients)
                    print(f"{server:8} {database:10} {clients:2} clients: {rps:7.0f} req/s, "
                          f"p99 {p99:6.1f} ms", flush=True)
    for clients in (1, 16):
        gun, wz = results[("gunicorn", "sqlite", clients)], results[("werkzeug", "sqlite", clients)]
        print(f"{clients:2} clients: gunicorn/werkzeug req/s x{gun[0] / wz[0]:.2f}, "
              f"p99 x{gun[1] / wz[1]:.2f}")
        if ("gunicorn", "postgresql", clients) in results:
            pg = results[("gunicorn", "postgresql", clients)]
            print(f"{clients:2} clients: postgresql/sqlite req/s x{pg[0] / gun[0]:.2f}, "
                  f"p99 x{pg[1] / gun[1]:.2f}")
