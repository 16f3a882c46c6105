"""Fixtures for attaching remote compute: Google stand-ins for an app, a real Jupyter server."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
import pytest
import requests
from flask.testing import FlaskClient

from local_api.remote.google_account import GoogleEndpoints
from tests.support.fake_colab import ColabState, create_colab_app
from tests.support.fake_google import (
    DriveState,
    LoopbackServer,
    OAuthState,
    create_drive_app,
    create_oauth_app,
)

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Google:
    """The OAuth, Colab and Drive stand-ins on loopback, and the endpoints an app needs for them."""

    oauth: OAuthState
    colab: ColabState
    drive: DriveState
    endpoints: GoogleEndpoints
    oauth_server: LoopbackServer | None = None  # stop it to make the token endpoint unreachable

    @property
    def credentials(self) -> dict[str, str]:
        return {"client_id": self.oauth.client_id, "client_secret": self.oauth.client_secret}


@pytest.fixture
def google(monkeypatch: pytest.MonkeyPatch) -> Iterator[Google]:
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # the stand-ins speak plain http
    oauth = OAuthState()
    colab = ColabState(tokens=oauth.tokens)
    drive = DriveState(tokens=oauth.tokens)
    with (
        LoopbackServer(create_oauth_app(oauth)) as o,
        LoopbackServer(create_colab_app(colab)) as c,
        LoopbackServer(create_drive_app(drive)) as d,
    ):
        endpoints = GoogleEndpoints(
            auth_uri=o.url + "/auth",
            token_uri=o.url + "/token",
            colab_url=c.url,
            colab_api_url=c.url,
            drive_root_url=d.url,
            keepalive_interval=3600.0,  # tests call tick() themselves
            clock=lambda: colab.now,
        )
        yield Google(oauth, colab, drive, endpoints, oauth_server=o)


def sign_in(client: FlaskClient, auth_url: str) -> dict[str, object]:
    """What the user's browser does: consent at the stand-in, land on the API's callback."""
    consent = requests.get(auth_url, allow_redirects=False, timeout=10)
    assert consent.status_code == 302, consent.text
    target = urlsplit(consent.headers["Location"])
    answer = client.get(f"{target.path}?{target.query}")
    assert answer.status_code == 200, answer.get_json()
    return dict(answer.get_json())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Jupyter:
    url: str
    token: str
    root: Path


@pytest.fixture(scope="module")
def jupyter(tmp_path_factory: pytest.TempPathFactory, model_store: object) -> Iterator[Jupyter]:
    """A real Jupyter server on loopback standing in for a runtime; stopped with its kernels.

    It accepts its token, or a Colab runtime-proxy token that the control-plane stand-in named
    by ``COLAB_STANDIN_URL`` vouches for (tests.support.colab_proxy_identity). Its kernels find the
    test's converted model through BRIDGE_MODELS_HOME, so a worker they start loads it as is.
    """
    root = tmp_path_factory.mktemp("jupyter-root")
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with jupyter_server(root, model_store, env) as server:
        yield server


@contextmanager
def jupyter_server(root: Path, model_store: object, extra: dict[str, str]) -> Iterator[Jupyter]:
    """Start ``jupyter server`` in ``root`` (``extra`` added to its environment); stop it and its
    kernels at the end. The server imports the identity provider from this source tree."""
    token, port = secrets.token_hex(16), free_port()
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(root / ".config"),
        "JUPYTER_RUNTIME_DIR": str(root / ".runtime"),
        "JUPYTER_PLATFORM_DIRS": "1",
        "BRIDGE_HOME": str(root / "bridge-home"),
        "BRIDGE_MODELS_HOME": str(model_store.root),  # type: ignore[attr-defined]
        # the worker serves the converted model on transformers, as the local fixture does
        # (on CPU, auto would pick llama.cpp, whose answer to the chat question differs)
        "BRIDGE_ENGINE": "transformers",
        "COLAB_STANDIN_FILE": str(root / "colab-standin-url"),
        **extra,
    }
    log = (root / "server.log").open("wb")
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "jupyter"), "server",
            f"--IdentityProvider.token={token}", f"--port={port}", "--ServerApp.port_retries=0",
            "--ServerApp.ip=127.0.0.1",
            "--no-browser", "--allow-root", f"--ServerApp.root_dir={root}",
            "--ServerApp.identity_provider_class=tests.support.colab_proxy_identity.ColabProxyIdentity",
        ],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (root / "server.log").read_text()
            try:
                if requests.get(url + "/api", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "jupyter server did not answer /api"
            time.sleep(0.2)
        yield Jupyter(url, token, root)
    finally:
        os.killpg(proc.pid, 15)  # the server and the kernels it started
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
        log.close()


def workers_of(jupyter: Jupyter) -> list[psutil.Process]:
    """The worker processes this Jupyter server's kernels started (found by their BRIDGE_HOME)."""
    home = str(jupyter.root / "bridge-home")
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if "colab_runtime.worker" in (proc.info["cmdline"] or []) and \
                    proc.environ().get("BRIDGE_HOME") == home:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def stored_runtime(google: Google, endpoint: str = "gpu-t4-s-9") -> dict[str, Any]:
    """A runtime Colab assigned before (its proxy token already expired), put in the
    stand-in's list; returns the ``colab`` record the service keeps for its worker."""
    nbh = "n" * 44
    now = google.colab.now
    google.colab.assignments[endpoint] = {
        "endpoint": endpoint, "accelerator": "T4", "variant": "GPU", "nbh": nbh,
        "token": "old", "expires_at": now - 1, "tokens": {}, "since": now, "active_at": now}
    return {"endpoint": endpoint, "accelerator": "T4", "variant": "GPU",
            "notebook_hash": nbh, "proxy_url": "http://unused"}
