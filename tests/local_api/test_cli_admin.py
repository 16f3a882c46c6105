"""`bridge models`, `status`, `backup`/`restore`, `connect` against a real service on loopback."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge.config import DEFAULT_MODEL_ID
from colab_runtime.worker import EchoBackend, WorkerServer, create_worker_app
from tests.support.cli import (
    BRIDGE,
    PASSWORD,
    Result,
    Service,
    interruptible,
    one_error_line,
    serving,
)
from tests.support.hub_standin import HubStandin
from tests.support.remote import Google, sign_in

pytestmark = pytest.mark.usefixtures("config_dir")

SECRET = "a-worker-secret-for-the-cli-tests"


def tiny_archive() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in {"config.json": b'{"model_type": "llama"}',
                           "model.safetensors": os.urandom(1_500_000)}.items():
            entry = tarfile.TarInfo(f"tiny/{name}")
            entry.size = len(data)
            archive.addfile(entry, io.BytesIO(data))
    return buffer.getvalue()


def test_models_list_table_and_json(logged_in: Service, cli: Callable[..., Result]) -> None:
    table = cli("models", "list")
    assert table.code == 0, table.err
    header, *rows = table.out.splitlines()
    assert header.split() == ["ID", "STATUS", "SIZE", "FAMILY", "ON", "DISK"]
    assert any(r.split()[:2] == ["smollm2-360m-instruct", "downloadable"] for r in rows)
    listed = json.loads(cli("models", "list", "--json").out)
    assert {m["id"] for m in listed} >= {DEFAULT_MODEL_ID, "smollm2-360m-instruct"}


def test_models_load_and_unload(logged_in: Service, cli: Callable[..., Result]) -> None:
    loaded = cli("models", "load", DEFAULT_MODEL_ID, "--device", "cpu")
    assert loaded.code == 0, loaded.err
    assert loaded.out.startswith(f"{DEFAULT_MODEL_ID}: loaded in 0.01 s (device cpu")
    assert logged_in.fake.loaded_models() == [DEFAULT_MODEL_ID]
    assert cli("models", "unload", DEFAULT_MODEL_ID).out == f"{DEFAULT_MODEL_ID}: unloaded\n"
    assert logged_in.fake.loaded_models() == []
    err = one_error_line(cli("models", "load", "llama-99b"), 1)
    assert err == "bridge: error: Model not found: llama-99b (see `bridge models list`)\n"


def test_pull_shows_progress_then_rm_removes(
    logged_in: Service, cli: Callable[..., Result], hub: HubStandin
) -> None:
    data = tiny_archive()
    url = hub.add_file("tiny.tar.gz", data)
    digest = hashlib.sha256(data).hexdigest()
    pulled = cli("models", "pull", "tiny", "--from-url", url, "--sha256", digest)
    assert pulled.code == 0, pulled.err
    assert pulled.out.startswith("tiny: completed (")
    assert "tiny: 100%|" in pulled.err and "[00:" in pulled.err  # tqdm's bar, on stderr
    store = logged_in.app.extensions["compute"].store
    assert store.verify("tiny").path is not None
    again = one_error_line(cli("models", "pull", "tiny", "--from-url", url), 1)
    assert again == ("bridge: error: tiny is already stored; remove it first with "
                     "`bridge models rm tiny`\n")
    assert cli("models", "rm", "tiny").out == "tiny: removed\n"
    assert "tiny" not in [m.id for m in store.list()]
    assert one_error_line(cli("models", "rm", "tiny"), 1) == (
        "bridge: error: Model 'tiny' not found\n")


def test_pull_from_the_registry_and_a_hugging_face_repo(
    app_config: dict[str, Any], tmp_path: Path, cli: Callable[..., Result], hub: HubStandin
) -> None:
    files = {"config.json": b'{"model_type": "llama"}', "model.safetensors": os.urandom(400_000)}
    hub.add_repo("HuggingFaceTB/SmolLM2-360M-Instruct", dict(files))
    hub.add_repo("someone/Tiny-Chat-Model", dict(files))
    with serving({**app_config, "hf_endpoint": hub.url}, tmp_path / "models") as running:
        assert cli("login", "--url", running.url, "--username", "alice", "--password-stdin",
                   stdin=PASSWORD + "\n").code == 0
        registry = cli("models", "pull", "smollm2-360m-instruct", "-q")
        assert (registry.code, registry.err) == (0, "")  # -q: no bar
        assert registry.out.startswith("smollm2-360m-instruct: completed (")
        repo = cli("models", "pull", "someone/Tiny-Chat-Model")
        assert repo.out.startswith("tiny-chat-model: completed (")  # named as the service does
        store = running.app.extensions["compute"].store
        assert store.get("smollm2-360m-instruct").family == "SmolLM2"
        assert store.verify("tiny-chat-model").path is not None


def test_pull_failures_are_one_line(
    logged_in: Service, cli: Callable[..., Result], hub: HubStandin
) -> None:
    err = one_error_line(cli("models", "pull", "llama-99b"), 1)
    assert "Model 'llama-99b' is not in the registry" in err
    url = hub.add_file("x.tar.gz", tiny_archive())
    failed = cli("models", "pull", "x", "--from-url", url, "--sha256", "0" * 64)
    assert failed.code == 1 and failed.out == ""
    last = failed.err.splitlines()[-1]  # after the progress bar, the error in one line
    assert last.startswith("bridge: error: x.tar.gz: sha256 ") and "does not match" in last
    assert "x" not in [m.id for m in logged_in.app.extensions["compute"].store.list()]


def test_ctrl_c_cancels_the_download(logged_in: Service, hub: HubStandin) -> None:
    url = hub.add_file("big.safetensors", os.urandom(3_000_000))
    hub.delay = 0.2  # ~10 s of download: Ctrl-C lands mid-way even on a busy machine
    with subprocess.Popen([BRIDGE, "models", "pull", "big", "--from-url", url],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          preexec_fn=interruptible) as process:
        headers = {"Authorization": f"Bearer {logged_in.token('alice')}"}
        status = f"{logged_in.url}/api/v1/models/big/status"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            answer = httpx.get(status, headers=headers, timeout=10)
            if answer.status_code == 200 and answer.json()["bytes_done"] > 0:
                break
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    assert err.splitlines()[-2:] == ["bridge: download of big cancelled", "bridge: interrupted"]
    assert httpx.get(status, headers=headers, timeout=10).json()["status"] == "cancelled"


def test_status_table_and_json(logged_in: Service, cli: Callable[..., Result]) -> None:
    text = cli("status")
    assert text.code == 0, text.err
    lines = text.out.splitlines()
    assert lines[0] == f"Service  {logged_in.url} (ok)"
    assert lines[1].startswith("CPU      ") and lines[3] == "GPU      none"
    assert lines[-2].split() == ["BACKEND", "KIND", "HEALTHY", "LATENCY", "URL"]
    assert lines[-1].split()[:3] == ["local", "local", "yes"]
    snapshot = json.loads(cli("status", "--json").out)
    assert snapshot["backends"][0]["name"] == "local"
    assert snapshot["resources"]["cpu"]["cores"] >= 1


def test_backup_list_restore(logged_in: Service, cli: Callable[..., Result]) -> None:
    made = cli("backup")
    assert made.code == 0, made.err
    backup_id = made.out.split()[1]
    assert made.out.startswith(f"backup {backup_id} completed at ")
    listed = cli("backup", "--list").out.splitlines()
    assert listed[0].split() == ["ID", "TIME", "SIZE", "STATUS"]
    assert any(line.startswith(backup_id) for line in listed[1:])
    logged_in.register("bob")  # after the backup: the restore takes bob away
    refused = one_error_line(cli("restore", backup_id), 2)
    assert "pass --yes" in refused
    assert cli("restore", backup_id, "--yes").out.startswith(f"restored {backup_id}: restored")
    gone = httpx.post(f"{logged_in.url}/api/v1/auth/login", timeout=10,
                      json={"username": "bob", "password": PASSWORD})
    assert gone.status_code == 401
    err = one_error_line(cli("restore", "20250101T000000Z-00000000", "--yes"), 1)
    assert "bridge: error: " in err


def test_backup_needs_an_admin(service: Service, cli: Callable[..., Result]) -> None:
    service.register("bob")
    assert cli("login", "--url", service.url, "--username", "bob", "--password-stdin",
               stdin=PASSWORD + "\n").code == 0
    assert one_error_line(cli("backup"), 1) == (
        "bridge: error: This action needs an admin account\n")


def test_connect_a_worker_then_disconnect(
    logged_in: Service, cli: Callable[..., Result], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    worker = WorkerServer(create_worker_app(EchoBackend(), SECRET)).start()
    try:
        secret_file = tmp_path / "worker.secret"
        secret_file.write_text(SECRET + "\n")
        attached = cli("connect", "--worker-url", worker.url, "--worker-secret-file",
                       str(secret_file), "--name", "gpu-box")
        assert attached.code == 0, attached.err
        assert attached.out.startswith(f"connected: gpu-box at {worker.url} (")
        status = json.loads(cli("status", "--json").out)
        (entry,) = [b for b in status["backends"] if b["name"] == "gpu-box"]
        assert entry["healthy"] is True
        assert SECRET not in json.dumps(status)
        (tmp_path / "wrong").write_text("another-secret-of-some-length")
        err = one_error_line(cli("connect", "--worker-url", worker.url, "--worker-secret-file",
                                 str(tmp_path / "wrong"), "--name", "other"), 2)
        assert "refused the worker_secret" in err
        err = one_error_line(cli("connect", "--worker-url", worker.url), 2)
        assert err == ("bridge: error: no worker secret: pass --worker-secret-file FILE or set "
                       "BRIDGE_WORKER_SECRET\n")
        assert cli("disconnect", "gpu-box").out == "detached gpu-box\n"
        assert one_error_line(cli("disconnect"), 1) == (
            "bridge: error: no remote worker is attached\n")
    finally:
        worker.stop()


def test_connect_colab_prints_the_consent_link_then_the_notebook_link(
    app_config: dict[str, Any], tmp_path: Path, cli: Callable[..., Result],
    google: Google, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    with serving(app_config, tmp_path / "models", google=google.endpoints) as running:
        assert cli("login", "--url", running.url, "--username", "alice", "--password-stdin",
                   stdin=PASSWORD + "\n").code == 0
        monkeypatch.setenv("BRIDGE_GOOGLE_CLIENT_SECRET", google.credentials["client_secret"])
        argv = ["connect", "--client-id", google.credentials["client_id"], "--manual"]
        first = cli(*argv)
        assert first.code == 0, first.err
        intro, link = first.out.splitlines()
        assert intro.startswith("Google needs your consent. Open this link")
        assert link.startswith(google.endpoints.auth_uri + "?")
        assert google.credentials["client_secret"] not in first.out
        assert sign_in(running.app.test_client(), link)["status"] == "authorized"
        second = cli(*argv)
        assert second.code == 0, second.err
        assert second.out.startswith("notebook_uploaded: Open colab_url")
        assert "https://colab.research.google.com/drive/" in second.out.splitlines()[-1]


def test_admin_commands_refuse_bad_flags(cli: Callable[..., Result]) -> None:
    err = one_error_line(
        cli("connect", "--worker-url", "http://x", "--openai-url", "http://y"), 2)
    assert "not allowed with argument" in err
    err = one_error_line(cli("models", "pull", "x", "--from-url", "u", "--from-path", "p"), 2)
    assert "give --from-url or --from-path, not both" in err
