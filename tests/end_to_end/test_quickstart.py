"""notebooks/quickstart.ipynb executed top to bottom by papermill (a real kernel from this
venv) against a server the test starts; and find_or_start starting a real `bridge serve`."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import papermill
import pytest
from flask import Flask

from bridge import Client, find_or_start
from bridge.backends.local import LocalBackend
from bridge.errors import ServiceUnreachable
from bridge.models.store import ModelStore
from bridge.router import Router
from bridge.sdk.service import healthy
from colab_runtime.worker import WorkerServer, create_worker_app
from tests.support.app import LiveServer
from tests.support.fakes import FakeBackend
from tests.support.hub_standin import HubStandin

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "quickstart.ipynb"
SECRET = "a-worker-secret-of-some-length"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def outputs(notebook: dict[str, Any]) -> list[str]:
    """Each code cell's outputs as one text: stdout, text/plain reprs, and for a widget every
    string value in it (from the widget state nbclient saves), as the user saw them last."""
    state = notebook["metadata"]["widgets"]["application/vnd.jupyter.widget-state+json"]
    models = state["state"]

    def strings(model_id: str) -> list[str]:
        found = models[model_id]["state"]
        values = [v for k, v in found.items() if k in ("value", "description")
                  and isinstance(v, str)]
        for child in found.get("children", []):
            values += strings(child.removeprefix("IPY_MODEL_"))
        return values

    texts = []
    for cell in notebook["cells"]:
        if cell["cell_type"] != "code":
            continue
        parts = []
        for out in cell["outputs"]:
            assert out["output_type"] != "error", "".join(out.get("traceback", []))
            data = out.get("data", {})
            if "application/vnd.jupyter.widget-view+json" in data:
                parts += strings(data["application/vnd.jupyter.widget-view+json"]["model_id"])
                continue
            text = out.get("text") or data.get("text/plain", "")
            parts.append("".join(text) if isinstance(text, list) else text)
        texts.append("\n".join(parts))
    return texts


@pytest.mark.model
def test_quickstart_runs_top_to_bottom_under_papermill(
    make_app: Callable[..., Flask], home: Path, tmp_path: Path, local_backend: LocalBackend,
    hub: HubStandin, monkeypatch: pytest.MonkeyPatch,
) -> None:
    hub.add_repo("acme/tiny", {"config.json": b'{"model_type": "llama"}',
                               "model.safetensors": os.urandom(1_000_000)})
    hub.delay = 0.005
    app = make_app({"home": home, "hf_endpoint": hub.url, "download_timeout": 5},
                   router=Router(local_backend), local=local_backend,
                   store=ModelStore(tmp_path / "models"))
    gpu = FakeBackend("gpu", models=["gpu-only-model"])
    worker = WorkerServer(create_worker_app(gpu, SECRET, runtime_info={
        "type": "jupyter", "device": "cuda", "gpu": "Tesla T4"})).start()
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))  # no stored `bridge login`
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    out = tmp_path / "quickstart-out.ipynb"
    try:
        with LiveServer(app) as server:
            papermill.execute_notebook(
                str(NOTEBOOK), str(out), kernel_name="python3", cwd=str(ROOT),
                progress_bar=False, execution_timeout=300, parameters={
                    "base_url": server.url, "start_server": False, "username": "nb-user",
                    "password": "correct horse", "register": True, "email": "nb@example.org",
                    "download_model_id": "tiny", "download_source": {"repo_id": "acme/tiny"},
                    "download_timeout": 120.0, "runtime_url": worker.url,
                    "runtime_kind": "worker", "runtime_secret": SECRET})
    finally:
        worker.stop()
    texts = outputs(json.loads(out.read_text()))
    params, injected, *cells = texts  # papermill adds the injected-parameters cell
    service, session, reply, chat, models, job, status, resources, connect, backends = cells
    assert "already running" in service and server.url in service
    assert "'username': 'nb-user'" in session and "'is_authenticated': True" in session
    assert "sea" in reply.lower() and "backend: local" in reply  # greedy: about the sea
    assert "<b>You</b><div class='bridge-md'><p>Name three colours.</p>" in chat
    assert "<b>Assistant</b>" in chat
    assert ">local</span>" in chat and "⚠" not in chat  # the badge, and no error line
    assert "<b>tiny</b>" in models and "<small>100% · 1.0M/1.0M</small>" in models
    assert "Download" in models and "⚠" not in models
    assert "'status': 'completed'" in job and "'progress': 1.0" in job
    assert " cores" in status and "no GPU on the service's machine" in status
    assert "'cpu': {" in resources and "'memory': {" in resources
    assert "<b>connected</b>: worker <code>worker-1</code>" in connect
    assert "gpu Tesla T4" in connect and "⚠" not in connect
    assert backends == "[('local', 'local', True), ('worker-1', 'worker', True)]"


def test_find_or_start_runs_bridge_serve_when_nothing_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BRIDGE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BRIDGE_PREPARE_MODEL", "0")
    monkeypatch.setenv("BRIDGE_MODELS_HOME", str(tmp_path / "models"))
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ServiceUnreachable, match=f"cannot reach the service at {url}; start"):
        find_or_start(url, start=False)
    with pytest.raises(ServiceUnreachable, match="not on this machine"):
        find_or_start("http://192.0.2.1:5000", start=True)
    service = find_or_start(url + "/api/v1", timeout=120)
    try:
        assert service.started_here and service.url == url and healthy(url)
        assert "started here" in repr(service)
        again = find_or_start(url)
        assert not again.started_here
        again.stop()  # not ours: a no-op
        assert healthy(url)
        with Client(url) as client:
            client.auth.login_or_register("ada", "correct horse", email="ada@example.org")
            assert client.auth.session().role == "admin"
    finally:
        service.stop()
    assert not healthy(url) and service.process is None
    assert "Compute Bridge listening on" in service.log_path.read_text()  # type: ignore[union-attr]
