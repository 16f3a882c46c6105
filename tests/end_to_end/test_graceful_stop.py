"""`kill` (SIGTERM) of `bridge serve` on gunicorn lets a running stream finish, then exits."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import httpx
import pytest

from bridge.config import DEFAULT_MODEL_ID
from bridge.models.store import ModelStore
from tests.support.live_process import serve

pytestmark = pytest.mark.model


def test_sigterm_lets_a_running_stream_finish(tmp_path: Path, model_store: ModelStore) -> None:
    # 120 s to finish: the default 30 s held ~100 tokens on a 2-core machine busy with other
    # work (1.4-2 tok/s there); what is tested is that the stream finishes, not how fast
    env = {"BRIDGE_MODELS_HOME": str(model_store.root), "BRIDGE_KEEP_ALIVE": "300",
           "BRIDGE_GRACEFUL_TIMEOUT": "120"}
    with serve(tmp_path / "home", env=env) as (process, url):
        httpx.post(f"{url}/api/auth/register", timeout=30, json={
            "username": "admin", "email": "a@example.org", "password": "correct horse"})
        token = httpx.post(f"{url}/api/v1/auth/login", timeout=30, json={
            "username": "admin", "password": "correct horse"}).json()["access_token"]
        body = {"model_id": DEFAULT_MODEL_ID, "prompt": "Write a long story about a dragon.",
                "stream": True, "parameters": {"max_tokens": 120, "temperature": 0}}
        lines = []
        with httpx.stream("POST", f"{url}/api/v1/chat/completion", json=body, timeout=180,
                          headers={"Authorization": f"Bearer {token}"}) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                if not line:
                    continue
                lines.append(json.loads(line))
                if len(lines) == 1:
                    process.send_signal(signal.SIGTERM)  # mid-stream
        assert lines[-1].get("is_final") is True, lines[-1]
        assert len(lines) > 30  # most of the answer was produced after the signal
        assert process.wait(timeout=150) == 0
        with pytest.raises(httpx.TransportError):  # and it no longer answers
            httpx.get(f"{url}/healthz", timeout=5)
