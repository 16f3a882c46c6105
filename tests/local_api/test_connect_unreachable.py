"""Remote compute that does not answer: plain words and what to check, on the API and the CLI,
never the HTTP library's own text ("HTTPConnectionPool ... Max retries exceeded")."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from tests.support.app import Auth
from tests.support.cli import Result, Service, one_error_line

RAW = ("HTTPConnectionPool", "Max retries", "Errno", "ConnectError", "NewConnectionError")


def _closed_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens once closed


@pytest.mark.parametrize(("body", "what"), [
    ({"runtime_url": "URL", "token": "t", "tunnel": "none", "timeout": 30}, "runtime"),
    ({"worker_url": "URL", "worker_secret": "s" * 32}, "worker"),
    ({"openai_base_url": "URL/v1"}, "OpenAI-compatible server"),
])
def test_unreachable_remote_compute_is_said_plainly(
    client: FlaskClient, auth: Auth, body: dict[str, object], what: str
) -> None:
    auth.register()
    url = _closed_url()
    body = {k: v.replace("URL", url) if isinstance(v, str) else v for k, v in body.items()}
    answer = client.post("/api/v1/system/colab/connect", json=body, headers=auth.headers())
    assert answer.status_code == 503
    error = answer.get_json()["error"]
    assert error["message"].startswith(f"cannot reach the {what} at {url}")
    assert "(connection refused: nothing listens there): check the URL and port" in \
        error["message"]
    assert error["details"]["reason"] == "unreachable"
    assert not any(raw in error["message"] for raw in RAW), error["message"]


@pytest.mark.usefixtures("config_dir")
def test_cli_connect_to_an_unreachable_worker_is_one_plain_line(
    logged_in: Service, cli: Callable[..., Result], tmp_path: Path
) -> None:
    secret = tmp_path / "worker.secret"
    secret.write_text("s" * 32)
    url = _closed_url()
    err = one_error_line(cli("connect", "--worker-url", url, "--worker-secret-file",
                             str(secret)), 1)
    assert err.startswith(f"bridge: error: cannot reach the worker at {url} (connection refused")
    assert not any(raw in err for raw in RAW), err
