"""A download that cannot reach its source says what to try, in plain words: a proxy, a
mirror (HF_ENDPOINT), a token, a local folder; not just the library's exception name."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

from flask import Flask

from tests.support.app import Auth


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the block ends: nothing listens


def test_unreachable_hub_says_what_to_try(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    app = make_app({"home": tmp_path / "home",
                    "hf_endpoint": f"http://127.0.0.1:{_closed_port()}"})
    client = app.test_client()
    auth = Auth(client)
    auth.register()
    answer = client.post("/api/v1/models/download", headers=auth.headers(),
                         json={"repo_id": "org/tiny", "model_id": "tiny"})
    assert answer.status_code == 502
    error = answer.get_json()["error"]
    assert error["details"]["error_type"] == "NETWORK_ERROR"
    message = error["message"]
    assert message.startswith("Cannot reach the Hugging Face Hub at http://127.0.0.1:")
    for hint in ("HTTPS_PROXY=", "HF_ENDPOINT=https://hf-mirror.com", "HF_TOKEN",
                 '{"source": "path"}'):
        assert hint in message, message


def test_unreachable_url_says_what_to_try(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    app = make_app({"home": tmp_path / "home"})
    client = app.test_client()
    auth = Auth(client)
    auth.register()  # the first account is the admin: loopback URLs are allowed to admins
    answer = client.post("/api/v1/models/download", headers=auth.headers(), json={
        "model_id": "m", "url": f"http://127.0.0.1:{_closed_port()}/m.gguf"})
    assert answer.status_code == 502
    message = answer.get_json()["error"]["message"]
    assert "is unreachable (ConnectError): check this machine's network" in message
    assert "HTTPS_PROXY=" in message
    assert "Errno" not in message and "Connection refused" not in message
