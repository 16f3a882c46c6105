"""The whole Colab path as a user meets it: `bridge serve` started as a user starts it, Google's
endpoints pointed at the strict stand-ins (real HTTP servers on loopback) only through the
BRIDGE_* variables, driven only through the public HTTP API.

Consent through the loopback redirect; a quota ``outcome`` given as a number (as Google's VS
Code extension reads it) told as such; connect: assign, pre-flight, the service's own wheel
uploaded through the runtime's contents API and installed into a kernel whose Python does not
have this project, although the proxy tokens the first answers hand out are stale (an empty 404:
renewed from the assignment list); the worker attached and answering; the keep-alive holding the
runtime past its ``fit``; every proxy token expiring mid-session (renewed, the worker serving on);
a server-side reclaim reported within two keep-alive rounds while requests are answered locally;
a second connect (the installed build is reused) released as released.

The runtime is a real ``jupyter server`` whose ``python3`` kernel runs in its own venv: that
venv reaches the shared environment's dependencies through one plain path line in a .pth file
(a folder of links to them, leaving out this project's editable install), never PYTHONPATH.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

from tests.support.fake_colab import ColabState, create_colab_app
from tests.support.fake_google import (
    DriveState,
    LoopbackServer,
    OAuthState,
    create_drive_app,
    create_oauth_app,
)
from tests.support.live_process import serve
from tests.support.remote import ROOT, Jupyter, jupyter_server, workers_of

CONNECT = "/api/v1/system/colab/connect"
INTERVAL = 2.0  # BRIDGE_COLAB_KEEPALIVE_INTERVAL: the probe interval of this test
FIT = 3  # the stand-in reclaims a runtime idle this many seconds (Colab: ~90 min)
OWN = ("compute_bridge", "__editable__", "_compute_bridge", "bridge", "local_api",
       "colab_runtime", "tests")


def kernel_venv(where: Path) -> Path:
    """A venv for the runtime's kernel without this project; returns its python."""
    venv = where / "kernel-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    shared = Path(sysconfig.get_paths()["purelib"])
    links = where / "shared-deps"
    links.mkdir()
    for entry in shared.iterdir():  # .pth files there are not read through a path line
        if not entry.name.startswith(OWN) and entry.suffix != ".pth":
            (links / entry.name).symlink_to(entry)
    python = venv / "bin" / "python"
    own_site = subprocess.run([str(python), "-c", "import sysconfig; "
                               "print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True).stdout.strip()
    (Path(own_site) / "shared_deps.pth").write_text(f"{links}\n")
    return python


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory, model_store: object) -> Iterator[Jupyter]:
    """A Jupyter server whose python3 kernel is the project-less venv's, behind the stand-in."""
    root = tmp_path_factory.mktemp("colab-runtime")
    python = kernel_venv(root)
    spec = root / "data" / "kernels" / "python3"
    spec.mkdir(parents=True)
    spec.joinpath("kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (runtime)", "language": "python",
        # no path into this source tree; pip offline (the wheel comes through the contents API)
        "env": {"PYTHONPATH": "", "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    }))
    (root / "home").mkdir()
    server_env = {"PYTHONPATH": str(ROOT),  # the server's identity provider (tests.support)
                  "JUPYTER_PATH": str(root / "data"), "HOME": str(root / "home")}
    with jupyter_server(root, model_store, server_env) as server:
        yield server


def import_fails_in_kernel(jupyter: Jupyter) -> str:
    """Run `import bridge` in the runtime's python3 kernel (started as the server starts it)."""
    manager = KernelManager(kernel_name="python3", kernel_spec_manager=KernelSpecManager(
        kernel_dirs=[str(jupyter.root / "data" / "kernels")]))
    manager.start_kernel(cwd=str(jupyter.root))
    client = manager.client()
    try:
        client.start_channels()
        client.wait_for_ready(timeout=60)
        reply = client.execute_interactive("import bridge", timeout=60, store_history=False)
        return str(reply["content"].get("ename", ""))
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)



@pytest.fixture
def google(runtime: Jupyter) -> Iterator[tuple[OAuthState, ColabState, dict[str, str]]]:
    """The OAuth, Colab and Drive stand-ins on loopback, on real time; the BRIDGE_* naming them."""
    oauth = OAuthState()
    colab = ColabState(tokens=oauth.tokens, fit=FIT, clock=time.time, runtime_url=runtime.url)
    with (LoopbackServer(create_oauth_app(oauth)) as o,
          LoopbackServer(create_colab_app(colab)) as c,
          LoopbackServer(create_drive_app(DriveState(tokens=oauth.tokens))) as d):
        (runtime.root / "colab-standin-url").write_text(c.url)
        env = {"BRIDGE_GOOGLE_AUTH_URI": o.url + "/auth",
               "BRIDGE_GOOGLE_TOKEN_URI": o.url + "/token", "BRIDGE_COLAB_URL": c.url,
               "BRIDGE_COLAB_API_URL": c.url, "BRIDGE_GOOGLE_DRIVE_URL": d.url + "/",
               "BRIDGE_COLAB_KEEPALIVE_INTERVAL": str(INTERVAL)}
        yield oauth, colab, env
    for proc in workers_of(runtime):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def renewed(statuses: list[int]) -> bool:
    """The runtime proxy refused a token (an empty 404), then took a later one."""
    return 404 in statuses and 200 in statuses[statuses.index(404):]


class Api:
    """The service's public HTTP API, as the user's client calls it."""

    def __init__(self, url: str) -> None:
        self.url, self.http = url, requests.Session()
        answer = self.http.post(f"{url}/api/auth/register", timeout=30, json={
            "username": "ada", "email": "ada@example.org", "password": "correct horse"})
        assert answer.status_code == 201, answer.text
        token = self.http.post(f"{url}/api/v1/auth/login", timeout=30, json={
            "username": "ada", "password": "correct horse"}).json()["access_token"]
        self.http.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.http.request(method, self.url + path, timeout=300, **kwargs)

    def ask(self) -> str:
        answer = self.call("POST", "/api/v1/chat/completion", headers={
            "Cache-Control": "no-cache"}, json={"prompt": "What is the capital of France?",
                                                "parameters": {"temperature": 0,
                                                               "max_tokens": 8}})
        assert answer.status_code == 200, answer.text
        return str(answer.json()["backend"])

    def status(self) -> dict[str, Any]:
        return dict(self.call("GET", "/api/v1/system/status").json())


def test_colab_as_a_user_meets_it(
    tmp_path: Path, runtime: Jupyter, google: tuple[OAuthState, ColabState, dict[str, str]],
    model_store: Any,
) -> None:
    oauth, colab, endpoints = google
    assert import_fails_in_kernel(runtime) == "ModuleNotFoundError"
    env = {**endpoints, "BRIDGE_MODELS_HOME": str(model_store.root),
           "BRIDGE_ENGINE": "transformers", "BRIDGE_KEEP_ALIVE": "600",
           "OAUTHLIB_INSECURE_TRANSPORT": "1"}  # the stand-ins speak plain http
    with serve(tmp_path / "home", env=env) as (_, url):  # --port 0: any free port
        port = url.rsplit(":", 1)[1]  # the loopback redirect names the port it listens on
        api = Api(url)
        assert api.ask() == "local"  # the local model answers (and is loaded) first
        api.status()  # the first status imports torch

        body = {"credentials": {"client_id": oauth.client_id,
                                "client_secret": oauth.client_secret},
                "accelerator": "T4", "tunnel": "none"}
        first = api.call("POST", CONNECT, json=body).json()
        assert first["status"] == "authorization_required", first
        assert first["redirect_uri"] == f"http://127.0.0.1:{port}/api/v1/system/colab/callback"
        consent = requests.get(first["auth_url"], timeout=30)  # the browser follows the redirect
        assert consent.status_code == 200 and consent.url.startswith(first["redirect_uri"])

        colab.outcome = "QUOTA_EXCEEDED_USAGE_TIME"  # the assign POST answers {"outcome": 2}
        quota = api.call("POST", CONNECT, json=body)
        assert quota.status_code == 429, quota.text
        error = quota.json()["error"]
        assert error["code"] == "COLAB_QUOTA_EXCEEDED" and "used up its Colab usage time" in \
            error["message"] and colab.assignments == {}
        colab.outcome = None

        colab.stale_tokens = 2  # the assign answer's token and the next list's: both stale
        answer = api.call("POST", CONNECT, json=body)
        assert answer.status_code == 200, answer.text
        connected = answer.json()
        assert (connected["status"], connected["worker"]) == ("connected", "colab-t4-1")
        endpoint = connected["runtime"]["endpoint"]
        assert colab.keepalives[0] == endpoint  # the pre-flight
        refused = {token for token, status in colab.proxy_checks if status == 404}
        assert len(colab.stale) == 2 and set(colab.stale) <= refused  # tried, refused, renewed
        assert list(runtime.root.glob("compute_bridge-*.whl"))  # uploaded (contents API)
        installed = runtime.root.glob("kernel-venv/lib/*/site-packages/compute_bridge-*")
        assert list(installed)  # and installed into the kernel's own venv
        assert api.ask() == "colab-t4-1"

        checked = len(colab.proxy_checks)
        colab.expire_proxy_tokens(endpoint)  # mid-session, long before their stated expiry
        expired = time.monotonic()
        while not renewed([status for _, status in colab.proxy_checks[checked:]]):
            assert time.monotonic() - expired <= 2 * INTERVAL + 5, "the token was not renewed"
            time.sleep(0.1)
        assert api.ask() == "colab-t4-1"  # the worker serves on
        assert api.status()["lost"] == [] and endpoint in colab.assignments

        at = time.time()
        while time.time() - at < FIT + 2 * INTERVAL:  # idle past fit: only keep-alive holds it
            time.sleep(0.5)
        assert endpoint in colab.assignments and colab.reclaimed == []
        assert api.ask() == "colab-t4-1"

        colab.reclaim(endpoint)  # Colab takes it back server-side: the VM and worker go
        for proc in workers_of(runtime):
            os.killpg(proc.pid, signal.SIGKILL)
        reclaimed, lost = time.monotonic(), []
        with ThreadPoolExecutor(1) as pool:  # requests meanwhile, while the status is watched
            answered = pool.submit(lambda: [api.ask() for _ in range(3)])
            while not lost:
                lost = api.status()["lost"]
                assert time.monotonic() - reclaimed <= 2 * INTERVAL, "the reclaim went unnoticed"
                time.sleep(0.05)
            backends = set(answered.result())
        assert backends == {"local"}
        assert (lost[0]["worker"], lost[0]["kind"]) == ("colab-t4-1", "reclaimed")

        again = api.call("POST", CONNECT, json=body)  # the runtime keeps the installed build
        assert again.status_code == 200, again.text
        second = again.json()["runtime"]["endpoint"]
        assert api.ask() == "colab-t4-1"
        gone = api.call("DELETE", CONNECT).json()
        assert gone["status"] == "disconnected" and gone["released"] == second, gone
        assert gone["warnings"] == [] and colab.assignments == {}

