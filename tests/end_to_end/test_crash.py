"""Crash safety: `kill -9` of the real service mid-burst loses no acknowledged write."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from bridge.config import DEFAULT_MODEL_ID
from bridge.models.store import ModelStore
from tests.support.live_process import kill_all, serve

PASSWORD = "correct horse"


class Burst:
    """Writers that loop until the service dies, recording only what it acknowledged."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.headers = url, {"Authorization": f"Bearer {token}"}
        self.users: list[str] = []
        self.keys: list[str] = []
        self.preference: list[int] = []  # acknowledged default_model numbers, in order
        self.exchanges: list[tuple[str, str, str]] = []  # (conversation id, prompt, answer)
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self._loop, args=(w,)) for w in
                        (self._register, self._api_key, self._preferences, self._generate)]

    def _loop(self, write: Callable[[httpx.Client, int], None]) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as http:
            n = 0
            while True:
                n += 1
                time.sleep(0.01)  # leave the server's GIL to the generation now and then
                try:
                    write(http, n)
                except httpx.TransportError:  # the service was killed
                    self.errors.append("cut off")
                    return
                except AssertionError as exc:  # an answer that was not a success
                    self.errors.append(f"failed: {exc}")
                    return

    def _register(self, http: httpx.Client, n: int) -> None:
        r = http.post("/api/auth/register", json={
            "username": f"user{n}", "email": f"user{n}@example.org", "password": PASSWORD})
        assert r.status_code == 201, r.text
        self.users.append(f"user{n}")

    def _api_key(self, http: httpx.Client, n: int) -> None:
        r = http.post("/api/v1/auth/api-keys", headers=self.headers, json={"name": f"key {n}"})
        assert r.status_code == 201, r.text
        self.keys.append(r.json()["id"])

    def _preferences(self, http: httpx.Client, n: int) -> None:
        r = http.put("/api/v1/user/preferences", headers=self.headers,
                     json={"preferences": {"default_model": f"model-{n}"}})
        assert r.status_code == 200, r.text
        self.preference.append(n)

    def _generate(self, http: httpx.Client, n: int) -> None:
        prompt = f"Say the number {n}."
        r = http.post("/api/v1/chat/completion", headers=self.headers, json={
            "prompt": prompt, "model_id": DEFAULT_MODEL_ID,
            "parameters": {"max_tokens": 3, "temperature": 0}})
        assert r.status_code == 200, r.text
        self.exchanges.append((r.json()["conversation_id"], prompt, r.json()["completion"]))

    def enough(self) -> bool:
        return (len(self.users) >= 3 and len(self.keys) >= 10 and len(self.preference) >= 10
                and len(self.exchanges) >= 2)  # the warm-up and one during the burst


def test_kill_9_mid_burst_keeps_every_acknowledged_write(
    tmp_path: Path, model_store: ModelStore
) -> None:
    home = tmp_path / "home"
    env = {"BRIDGE_RATELIMIT_ENABLED": "0", "BRIDGE_MODELS_HOME": str(model_store.root),
           "BRIDGE_KEEP_ALIVE": "300"}  # keep the model loaded between generations
    with serve(home, env=env) as (process, url):
        httpx.post(f"{url}/api/auth/register", json={
            "username": "admin", "email": "admin@example.org", "password": PASSWORD})
        token = httpx.post(f"{url}/api/v1/auth/login", json={
            "username": "admin", "password": PASSWORD}, timeout=30).json()["access_token"]
        burst = Burst(url, token)
        with httpx.Client(base_url=url, timeout=120) as http:
            burst._generate(http, 0)  # loads the model: the burst's generations are then quick
        for thread in burst.threads:
            thread.start()
        deadline = time.monotonic() + 120
        while not burst.enough() and time.monotonic() < deadline:
            time.sleep(0.05)
        kill_all(process)  # mid-burst: every writer has a request going
        for thread in burst.threads:
            thread.join(timeout=60)
    assert burst.enough(), (len(burst.users), len(burst.keys), burst.preference[-1:],
                            burst.exchanges)
    assert burst.errors == ["cut off"] * 4  # every writer ran until the kill

    with sqlite3.connect(home / "bridge.db") as raw:  # readable before the service reopens it
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with serve(home, env=env) as (_process, url), httpx.Client(base_url=url, timeout=30) as http:
        token = http.post("/api/v1/auth/login", json={
            "username": "admin", "password": PASSWORD}).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        users = {u["username"] for u in http.get("/api/v1/admin/users", headers=headers)
                 .json()["users"]}
        assert set(burst.users) <= users
        keys = {k["id"] for k in http.get("/api/v1/auth/api-keys", headers=headers)
                .json()["api_keys"]}
        assert set(burst.keys) <= keys
        stored = http.get("/api/v1/user/profile", headers=headers).json()["user"]["preferences"]
        # The last acknowledged write, or the one in flight at the kill; never an older one.
        assert int(stored["default_model"].split("-")[1]) >= burst.preference[-1]
        for conversation_id, prompt, answer in burst.exchanges:
            r = http.get(f"/api/v1/conversations/{conversation_id}", headers=headers)
            assert r.status_code == 200, r.text
            messages = r.json()["conversation"]["messages"]
            assert [(m["role"], m["content"]) for m in messages] == [
                ("user", prompt), ("assistant", answer)]
