"""Model downloads through the real API, from a Hugging Face Hub stand-in on loopback."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import socket
import tarfile
import threading
import time
from collections import namedtuple
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import websocket
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from bridge.config import DEFAULT_MODEL_ID, Settings
from bridge.models.store import BUILTIN, MANIFEST, ModelStore
from bridge.router import Router
from local_api.models import downloads
from local_api.storage import schema
from tests.support.app import Auth, LiveServer
from tests.support.fakes import LocalFake
from tests.support.hub_standin import HubStandin

# on SQLite and on a real PostgreSQL (tests/support/servers.py)
pytestmark = pytest.mark.usefixtures("database_url")

API = "/api/v1/models"
DONE = ("completed", "failed", "cancelled")


@pytest.fixture
def config(tmp_path: Path, hub: HubStandin) -> dict[str, Any]:
    return {"home": tmp_path / "home", "hf_endpoint": hub.url, "ratelimit_enabled": False,
            "download_timeout": 5, "download_retries": 1}


@pytest.fixture
def app(make_app: Callable[..., Flask], config: dict[str, Any]) -> Flask:
    return make_app(config)


def tiny_model(weights: int = 3_000_000) -> dict[str, bytes | Path]:
    return {"config.json": b'{"model_type": "llama"}', "tokenizer.json": b'{"version": "1.0"}',
            "model.safetensors": os.urandom(weights), "README.md": b"# a model card"}


def store(app: Flask) -> ModelStore:
    return app.extensions["compute"].store  # type: ignore[no-any-return]


def wait(client: FlaskClient, model_id: str, headers: dict[str, str],
         until: Callable[[dict[str, Any]], bool], limit: float = 30) -> dict[str, Any]:  # fmt: skip
    deadline = time.monotonic() + limit
    while True:
        body = client.get(f"{API}/{model_id}/status", headers=headers).get_json()
        if until(body):
            return dict(body)
        assert time.monotonic() < deadline, body
        time.sleep(0.03)


def finished(body: dict[str, Any]) -> bool:
    return body["status"] in DONE


def sha256(data: bytes | Path) -> str:
    return hashlib.sha256(data if isinstance(data, bytes) else data.read_bytes()).hexdigest()


def jobs(app: Flask) -> list[dict[str, Any]]:
    with app.extensions["db"].connect() as conn:
        table = schema.download_jobs
        rows = conn.execute(select(table).order_by(table.c.created_at))
        return [dict(r) for r in rows.mappings().all()]


def partials(app: Flask) -> list[Path]:
    root = store(app).root / ".partial"
    return sorted(root.rglob("*")) if root.exists() else []


@pytest.mark.model
def test_real_model_from_the_hub_loads_and_answers(
    client: FlaskClient, auth: Auth, hub: HubStandin, model_store: ModelStore, app: Flask
) -> None:
    folder = model_store.get(DEFAULT_MODEL_ID).path
    assert folder is not None
    hub.add_repo("HuggingFaceTB/SmolLM2-135M-Instruct",
                 {p.name: p for p in folder.iterdir() if p.name != MANIFEST})
    headers = auth.headers()
    started = client.post(f"{API}/download", headers=headers, json={
        "model_id": "smol-mirror", "source": "huggingface",
        "repo_id": "HuggingFaceTB/SmolLM2-135M-Instruct", "revision": "main"})
    assert started.status_code == 202, started.get_json()
    done = wait(client, "smol-mirror", headers, finished, limit=60)
    assert done["status"] == "completed" and done["progress"] == 1.0, done
    assert done["source"]["revision"] == hub.repos["HuggingFaceTB/SmolLM2-135M-Instruct"].commit
    info = store(app).verify("smol-mirror")
    assert info.path is not None and (info.path / "model.safetensors").stat().st_size > 500e6
    assert not (info.path / "README.md").exists()  # only what a transformers folder needs
    answer = client.post("/api/v1/chat/completion", headers=headers, json={
        "model_id": "smol-mirror", "prompt": "What is the capital of France?",
        "parameters": {"temperature": 0, "max_tokens": 24}})
    assert answer.status_code == 200, answer.get_json()
    assert "Paris" in answer.get_json()["completion"]
    listed = client.get(API, headers=headers).get_json()["models"]
    mirror = next(m for m in listed if m["id"] == "smol-mirror")
    assert mirror["source"].startswith("hf:HuggingFaceTB/SmolLM2-135M-Instruct@")
    assert (mirror["name"], mirror["family"], mirror["size"]) == (
        "SmolLM2-135M-Instruct", "llama", "135M")  # read from config.json and the weights
    removed = client.delete(f"{API}/smol-mirror", headers=headers)  # loaded: unloaded first
    assert removed.status_code == 200, removed.get_json()
    assert not info.path.exists()
    status = client.get("/api/v1/system/status", headers=headers).get_json()
    assert "smol-mirror" not in status["models"]["loaded"]


def test_ft_registry_body_shows_progress_eta_speed_and_pushes_events(
    client: FlaskClient, auth: Auth, hub: HubStandin, app: Flask
) -> None:
    files = tiny_model()
    hub.add_repo("HuggingFaceTB/SmolLM2-360M-Instruct", files)
    hub.delay = 0.03  # ~1.4 s for 3 MB
    headers = auth.headers()
    with LiveServer(app) as server:
        token = headers["Authorization"].split()[1]
        ws = websocket.create_connection(server.url.replace("http", "ws") + "/ws",
                                         header=[f"Authorization: Bearer {token}"], timeout=10)
        ws.send(json.dumps({"event": "ping", "data": {}}))
        assert json.loads(ws.recv())["event"] == "pong"  # subscribed before the download starts
        started = client.post("/api/models/download", headers=headers,
                              json={"model_id": "smollm2-360m-instruct", "source": "registry"})
        assert started.status_code == 202
        body = started.get_json()
        assert body["status"] == "downloading" and body["progress"] == 0.0
        # FT shows eta and speed as strings: never null, even before anything is measured
        assert (body["eta"], body["eta_seconds"], body["speed"]) == ("unknown", None, "0B/s")
        assert body["bytes_total"] == sum(len(v) for k, v in files.items() if k != "README.md")
        midway = wait(client, "smollm2-360m-instruct", headers,
                      lambda b: finished(b) or (0 < b["progress"] < 1 and b["eta_seconds"]))
        assert midway["status"] == "downloading", midway
        assert re.fullmatch(r"PT(\d+M)?\d+S", midway["eta"]), midway["eta"]
        assert re.fullmatch(r"[\d.]+(B|KB|MB|GB)/s", midway["speed"]), midway["speed"]
        assert 0 < midway["bytes_done"] < midway["bytes_total"]
        done = wait(client, "smollm2-360m-instruct", headers, finished)
        assert done["status"] == "completed" and done["eta"] == "PT0S"
        events = []
        while not events or events[-1]["status"] not in DONE:
            frame = json.loads(ws.recv())
            if frame["event"] == "model_status":
                events.append(frame["data"])
        ws.close()
    assert {e["model_id"] for e in events} == {"smollm2-360m-instruct"}
    assert all(re.fullmatch(r"[\d.]+(B|KB|MB|GB)/s", e["speed"]) for e in events), events
    progress = [e["progress"] for e in events]
    assert progress == sorted(progress) and progress[-1] == 1.0 and len(progress) >= 3
    assert any(0 < p < 1 for p in progress)
    models = client.get("/api/models", headers=headers).get_json()["models"]
    smol = next(m for m in models if m["id"] == "smollm2-360m-instruct")
    assert (smol["status"], smol["name"], smol["family"]) == ("ready", "SmolLM2 360M Instruct",
                                                              "SmolLM2")
    path = store(app).verify("smollm2-360m-instruct").path
    assert path is not None and sha256(path / "model.safetensors") == sha256(
        files["model.safetensors"])
    assert partials(app) == []


def test_url_archive_with_sha256_resumes_a_cut_connection_with_range(
    client: FlaskClient, auth: Auth, hub: HubStandin, app: Flask
) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in tiny_model(1_500_000).items():
            assert isinstance(data, bytes)
            entry = tarfile.TarInfo(f"tiny/{name}")
            entry.size = len(data)
            archive.addfile(entry, io.BytesIO(data))
    data = buffer.getvalue()
    url = hub.add_file("tiny.tar.gz", data)
    hub.cuts["tiny.tar.gz"] = [700_000]
    headers = auth.headers()
    started = client.post(f"{API}/download", headers=headers, json={
        "model_id": "tiny", "url": f"{url}?token=s3cret", "sha256": sha256(data).upper()})
    assert started.status_code == 202, started.get_json()
    assert started.get_json()["source"]["location"] == url  # signed-URL secrets stay private
    assert wait(client, "tiny", headers, finished)["status"] == "completed"
    resumed_from = hub.ranges("tiny.tar.gz")[-1]
    assert resumed_from is not None and 0 < int(resumed_from[6:-1]) <= 700_000
    path = store(app).verify("tiny").path
    assert path is not None
    assert sorted(p.name for p in path.iterdir()) == [
        "README.md", "config.json", MANIFEST, "model.safetensors", "tokenizer.json"]
    assert partials(app) == []


def test_cancel_mid_download_leaves_no_half_file(
    client: FlaskClient, auth: Auth, hub: HubStandin, app: Flask
) -> None:
    url = hub.add_file("big.safetensors", os.urandom(3_000_000))
    hub.delay = 0.05
    headers = auth.headers()
    client.post(f"{API}/download", headers=headers, json={"model_id": "big", "url": url})
    wait(client, "big", headers, lambda b: b["bytes_done"] > 0)
    assert any(p.is_file() for p in partials(app))
    other = client.delete(f"{API}/big/download", headers=auth.headers("bob"))
    assert other.status_code == 403  # only the user who started it, or an admin
    cancelled = client.delete("/api/models/big/download", headers=headers)
    assert cancelled.status_code == 200 and cancelled.get_json()["status"] == "cancelled"
    assert client.get(f"{API}/big/status", headers=headers).get_json()["status"] == "cancelled"
    assert partials(app) == []
    assert "big" not in [m.id for m in store(app).list()]
    assert [j["status"] for j in jobs(app)] == ["cancelled"]
    again = client.delete(f"{API}/big/download", headers=headers)
    assert again.status_code == 404 and again.get_json()["error"]["code"] == "NOT_FOUND"


def files_holding(root: Path, *secrets: bytes) -> list[Path]:
    """Files under ``root`` (database, WAL, manifests, partial files) holding any secret."""
    return [p for p in sorted(root.rglob("*"))
            if p.is_file() and any(s in p.read_bytes() for s in secrets)]


def test_restart_mid_download_resumes_a_signed_url_kept_sealed_at_rest(
    client: FlaskClient, auth: Auth, hub: HubStandin, app: Flask,
    make_app: Callable[..., Flask], config: dict[str, Any],
) -> None:  # fmt: skip
    data = os.urandom(3_000_000)
    url = hub.add_file("weights.bin", data)
    signed = url.replace("http://", "http://mirror-user:pw-hunter2@") + "?sig=sig-s3cr3t-42&e=9"
    secrets = (b"pw-hunter2", b"sig-s3cr3t-42")
    hub.delay = 0.03
    headers = auth.headers()
    started = client.post(f"{API}/download", headers=headers,
                          json={"model_id": "resumable", "url": signed, "sha256": sha256(data)})
    assert started.status_code == 202 and started.get_json()["source"]["location"] == url
    wait(client, "resumable", headers, lambda b: b["progress"] >= 0.2)
    downloads.close(app)  # the service stops; its worker threads end mid-file
    (partial,) = [p for p in partials(app) if p.is_file()]
    have = partial.stat().st_size
    assert 0 < have < len(data)
    assert [(j["status"], j["location"]) for j in jobs(app)] == [("downloading", url)]
    assert files_holding(config["home"], *secrets) == []  # sealed in the database
    hub.delay = 0.0
    again = make_app(config)  # a new service on the same BRIDGE_HOME
    second = again.test_client()
    done = wait(second, "resumable", headers, finished)
    assert done["status"] == "completed", done
    assert hub.ranges("weights.bin")[-1] == f"bytes={have}-"
    resumed = hub.requests[-1]  # the full URL came back out of the seal after the restart
    assert resumed["if_range"]  # the resume is tied to the ETag it started with
    assert resumed["query"] == "sig=sig-s3cr3t-42&e=9"
    assert resumed["authorization"] == "Basic " + base64.b64encode(
        b"mirror-user:pw-hunter2").decode()
    path = store(again).verify("resumable").path
    assert path is not None and (path / "weights.bin").read_bytes() == data
    assert partials(again) == []
    listed = second.get(f"{API}/downloads", headers=headers).get_json()["downloads"]
    assert [d["source"]["location"] for d in listed] == [url]
    assert files_holding(config["home"], *secrets) == []


@pytest.fixture
def keeper(app: Flask, tmp_path: Path) -> Path:
    """A model already in the store, which no failed download may touch."""
    folder = tmp_path / "keeper"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"k" * 1000)
    store(app).register("keeper", folder, name="Keeper")
    return folder


def assert_intact(app: Flask) -> None:
    assert store(app).verify("keeper").bytes == 1002
    assert {m.id for m in store(app).list()} == {"keeper", *BUILTIN}  # nothing added
    assert partials(app) == []
    assert all(j["status"] == "failed" for j in jobs(app))


def test_upstream_404s_fail_with_not_found(
    client: FlaskClient, auth: Auth, hub: HubStandin, app: Flask, keeper: Path
) -> None:
    hub.add_repo("org/tiny", tiny_model(1000))
    hub.missing.add("gone.bin")
    headers = auth.headers()
    for body in ({"model_id": "a", "url": f"{hub.url}/files/gone.bin"},
                 {"model_id": "b", "repo_id": "org/nothing-here"},
                 {"model_id": "c", "repo_id": "org/tiny", "revision": "v9"}):
        response = client.post(f"{API}/download", headers=headers, json=body)
        assert response.status_code == 502, body
        error = response.get_json()["error"]
        assert (error["code"], error["details"]["error_type"]) == ("DOWNLOAD_FAILED", "NOT_FOUND")
        assert error["details"]["model_id"] == body["model_id"]
        status = client.get(f"{API}/{body['model_id']}/status", headers=headers).get_json()
        assert status["status"] == "failed"
        assert status["error"]["code"] == "DOWNLOAD_FAILED"
        assert status["error"]["error_type"] == "NOT_FOUND"
    assert_intact(app)


def test_checksum_mismatch_from_a_url_and_from_the_hub(
    client: FlaskClient, auth: Auth, hub: HubStandin, app: Flask, keeper: Path
) -> None:
    url = hub.add_file("w.bin", os.urandom(200_000))
    hub.add_repo("org/tiny", tiny_model(200_000))  # model.safetensors is an LFS file: sha256
    hub.add_repo("org/small", {"config.json": b"{}", "vocab.txt": b"a\nb\n" * 500,
                               "weights.safetensors": os.urandom(1000)})  # vocab.txt: git id
    hub.corrupt |= {"model.safetensors", "vocab.txt"}
    headers = auth.headers()
    for body, check in (({"model_id": "bad-url", "url": url, "sha256": "0" * 64}, "sha256"),
                        ({"model_id": "bad-lfs", "repo_id": "org/tiny"}, "sha256"),
                        ({"model_id": "bad-git", "repo_id": "org/small"}, "git blob id")):
        assert client.post(f"{API}/download", headers=headers, json=body).status_code == 202
        status = wait(client, body["model_id"], headers, finished)
        assert status["status"] == "failed" and status["error"]["error_type"] == "CHECKSUM_MISMATCH"
        assert f"{check} " in status["error"]["message"], status["error"]
    assert_intact(app)


def test_a_stalled_server_times_out_as_network_error(
    hub: HubStandin, make_app: Callable[..., Flask], config: dict[str, Any]
) -> None:
    app = make_app({**config, "download_timeout": 1, "download_retries": 0})
    client = app.test_client()
    headers = Auth(client).headers()
    url = hub.add_file("slow.bin", os.urandom(100_000))
    hub.hang.add("slow.bin")
    started = time.monotonic()
    assert client.post(f"{API}/download", headers=headers,
                       json={"model_id": "slow", "url": url}).status_code == 202
    status = wait(client, "slow", headers, finished)
    assert status["status"] == "failed" and status["error"]["error_type"] == "NETWORK_ERROR"
    assert "timed out" in status["error"]["message"]
    assert time.monotonic() - started < 5
    assert partials(app) == [] and "slow" not in [m.id for m in store(app).list()]


def test_not_enough_disk_space_is_disk_full(
    client: FlaskClient, auth: Auth, hub: HubStandin, app: Flask, keeper: Path
) -> None:
    url = hub.add_file("huge.bin", os.urandom(100_000))
    usage = namedtuple("usage", "total used free")(10 << 30, (10 << 30) - (1 << 20), 1 << 20)
    with mock.patch("shutil.disk_usage", return_value=usage):
        response = client.post(f"{API}/download", headers=auth.headers(),
                               json={"model_id": "huge", "url": url})
    assert response.status_code == 507
    error = response.get_json()["error"]
    assert (error["code"], error["details"]["error_type"]) == ("DOWNLOAD_FAILED", "DISK_FULL")
    assert not [r for r in hub.requests if r["method"] == "GET"]  # refused before fetching
    assert_intact(app)


def test_bad_requests_get_the_envelope_and_change_nothing(
    client: FlaskClient, auth: Auth, hub: HubStandin, app: Flask, keeper: Path, tmp_path: Path
) -> None:
    admin, bob = auth.headers(), auth.headers("bob")
    cases: list[tuple[Any, int, str]] = [
        ({}, 400, "VALIDATION_ERROR"),
        ({"model_id": "x", "source": "ftp"}, 400, "VALIDATION_ERROR"),
        ({"model_id": "x", "source": "url"}, 400, "VALIDATION_ERROR"),
        ({"model_id": "x", "url": "file:///etc/passwd"}, 400, "VALIDATION_ERROR"),
        ({"model_id": "x", "url": "ftp://example.org/m.bin"}, 400, "VALIDATION_ERROR"),
        ({"model_id": "../evil", "url": f"{hub.url}/files/m"}, 400, "VALIDATION_ERROR"),
        ({"model_id": ".hidden", "repo_id": "org/m"}, 400, "VALIDATION_ERROR"),
        ({"model_id": "x", "repo_id": "../../etc"}, 400, "VALIDATION_ERROR"),
        ({"model_id": "x", "repo_id": "org/m", "revision": "../main"}, 400, "VALIDATION_ERROR"),
        ({"model_id": "x", "repo_id": "org/m", "url": "http://a/b"}, 400, "VALIDATION_ERROR"),
        ({"model_id": "x", "url": "http://a/b", "sha256": "abc"}, 400, "VALIDATION_ERROR"),
        ({"model_id": "x", "url": "http://[::1"}, 400, "VALIDATION_ERROR"),
        ({"model_id": "x", "url": "http://a:99999/b"}, 400, "VALIDATION_ERROR"),
        ({"model_id": "x", "url": "http://a/b\x00c"}, 400, "VALIDATION_ERROR"),
        ({"model_id": "x", "url": "http://a/b c"}, 400, "VALIDATION_ERROR"),
        ({"model_id": "x", "url": "http://user@/b"}, 400, "VALIDATION_ERROR"),
        ({"model_id": "x", "source": "path", "path": "~nosuchuser-zz/x"}, 400,
         "VALIDATION_ERROR"),
        ({"model_id": "x", "source": "path", "path": "/tmp/a\x00b"}, 400, "VALIDATION_ERROR"),
        ({"model_id": "x", "source": "path", "path": "/" + "a" * 300}, 400, "VALIDATION_ERROR"),
        ({"model_id": "x", "source": "path", "path": "relative/dir"}, 400, "VALIDATION_ERROR"),
        ({"model_id": "x", "source": "path", "path": str(store(app).root)}, 400,
         "VALIDATION_ERROR"),
        ({"model_id": "no-such-model", "source": "registry"}, 404, "MODEL_NOT_FOUND"),
        ({"model_id": "keeper", "url": f"{hub.url}/files/m"}, 409, "CONFLICT"),
        ([1, 2], 400, "VALIDATION_ERROR"),
    ]
    for body, status, code in cases:
        response = client.post(f"{API}/download", headers=admin, json=body)
        assert response.status_code == status, (body, response.get_json())
        error = response.get_json()["error"]
        assert error["code"] == code and error["message"] and error["request_id"], body
    for path in (str(tmp_path), "~nosuchuser-zz/x", "relative/dir"):  # admin check first
        forbidden = client.post(f"{API}/download", headers=bob,
                                json={"model_id": "x", "source": "path", "path": path})
        assert forbidden.status_code == 403, (path, forbidden.get_json())
        assert forbidden.get_json()["error"]["code"] == "FORBIDDEN"
    assert client.post(f"{API}/download", json={"model_id": "x"}).status_code == 401
    assert client.get(f"{API}/.hidden/status", headers=admin).status_code == 400
    assert client.get(f"{API}/never-heard-of/status", headers=admin).status_code == 404
    assert client.delete(f"{API}/keeper/download", headers=admin).status_code == 404
    assert not hub.requests and jobs(app) == []
    assert store(app).verify("keeper").bytes == 1002
    assert {m.id for m in store(app).list()} == {"keeper", *BUILTIN}


def test_admin_imports_a_local_folder_and_the_owner_removes_it(
    client: FlaskClient, auth: Auth, app: Flask, tmp_path: Path
) -> None:
    admin, bob = auth.headers(), auth.headers("bob")
    folder = tmp_path / "local-model"
    folder.mkdir()
    for name, data in tiny_model(50_000).items():
        assert isinstance(data, bytes)
        (folder / name).write_bytes(data)
    started = client.post(f"{API}/download", headers=admin, json={
        "model_id": "local", "source": "path", "path": str(folder), "family": "Llama"})
    assert started.status_code == 202, started.get_json()
    assert wait(client, "local", admin, finished)["status"] == "completed"
    info = store(app).verify("local")
    assert (info.family, info.source) == ("Llama", f"path:{folder.resolve()}")
    assert (folder / "model.safetensors").exists()  # an import copies; the source stays
    again = client.post(f"{API}/download", headers=admin,
                        json={"model_id": "local", "source": "path", "path": str(folder)})
    assert again.status_code == 409
    assert client.delete(f"{API}/local", headers=bob).status_code == 403
    removed = client.delete(f"{API}/local", headers=admin)
    assert removed.status_code == 200 and removed.get_json()["status"] == "deleted"
    assert "local" not in [m.id for m in store(app).list()]
    assert client.delete(f"{API}/local", headers=admin).status_code == 404
    audit = client.get("/api/v1/audit", headers=admin).get_json()["events"]
    assert {"model_download", "model_delete"} <= {e["event"] for e in audit}
    listed = client.get(f"{API}/downloads", headers=admin).get_json()["downloads"]
    assert [(d["model_id"], d["status"]) for d in listed] == [("local", "completed")]
    assert client.get(f"{API}/downloads", headers=bob).get_json()["downloads"] == []


def test_registry_models_are_listed_as_downloadable(client: FlaskClient, auth: Auth) -> None:
    models = client.get(API, headers=auth.headers()).get_json()["models"]
    listed = {m["id"]: m for m in models}
    assert listed["smollm2-360m-instruct"]["status"] == "downloadable"
    assert listed["llama2-7b"]["source"] == "hf:meta-llama/Llama-2-7b-chat-hf"
    status = client.get(f"{API}/smollm2-360m-instruct/status", headers=auth.headers()).get_json()
    assert (status["status"], status["progress"]) == ("downloadable", 0.0)
    assert (status["eta"], status["speed"]) == ("unknown", "0B/s")  # strings, as FT shows


def test_hf_endpoint_comes_from_the_environment() -> None:
    assert Settings.from_env({"HF_ENDPOINT": "http://mirror.local"}).hf_endpoint == (
        "http://mirror.local")
    env = {"HF_ENDPOINT": "http://a", "BRIDGE_HF_ENDPOINT": "http://b"}
    assert Settings.from_env(env).hf_endpoint == "http://b"


def test_non_admins_get_registry_ids_only_from_the_registry(
    client: FlaskClient, auth: Auth, hub: HubStandin, app: Flask
) -> None:
    admin, bob = auth.headers(), auth.headers("bob")
    evil = hub.add_file("evil.bin", os.urandom(10_000))
    for body in ({"model_id": DEFAULT_MODEL_ID, "url": evil},
                 {"model_id": DEFAULT_MODEL_ID, "repo_id": "evil/smollm"},
                 {"repo_id": "HuggingFaceTB/SmolLM2-135M-Instruct"},  # the id it derives
                 {"model_id": "qwen2.5-0.5b-instruct", "repo_id": "Qwen/Qwen2.5-0.5B-Instruct"},
                 {"model_id": "smollm2-360m-instruct", "revision": "refs/pr/1"}):
        refused = client.post(f"{API}/download", headers=bob, json=body)
        assert refused.status_code == 403, (body, refused.get_json())
        error = refused.get_json()["error"]
        assert error["code"] == "FORBIDDEN" and "registry source" in error["message"], body
        assert error["details"]["rule"] == "registry_source_only"
    assert not hub.requests and jobs(app) == []
    assert store(app).get(DEFAULT_MODEL_ID).path is None  # the default model was not replaced
    files = tiny_model(20_000)
    hub.add_repo("HuggingFaceTB/SmolLM2-360M-Instruct", files)
    started = client.post(f"{API}/download", headers=bob,
                          json={"model_id": "smollm2-360m-instruct", "source": "registry"})
    assert started.status_code == 202, started.get_json()
    assert wait(client, "smollm2-360m-instruct", bob, finished)["status"] == "completed"
    for who, body in ((bob, {"model_id": "smollm2-360m-instruct"}),
                      (admin, {"model_id": "smollm2-360m-instruct", "url": evil})):
        again = client.post(f"{API}/download", headers=who, json=body)
        assert again.status_code == 409 and again.get_json()["error"]["code"] == "CONFLICT"
    path = store(app).verify("smollm2-360m-instruct").path
    assert path is not None and sha256(path / "model.safetensors") == sha256(
        files["model.safetensors"])
    admin_own = client.post(f"{API}/download", headers=admin,  # admins may use any source
                            json={"model_id": "qwen2.5-0.5b-instruct", "url": evil})
    assert admin_own.status_code == 202, admin_own.get_json()
    assert wait(client, "qwen2.5-0.5b-instruct", admin, finished)["status"] == "completed"


def test_non_admin_urls_must_reach_public_addresses(
    client: FlaskClient, auth: Auth, hub: HubStandin, app: Flask
) -> None:
    auth.headers()
    bob = auth.headers("bob")
    url = hub.add_file("w.bin", os.urandom(10_000))
    port = hub.server.server_port
    for target in (url, f"http://localhost:{port}/files/w.bin", f"http://[::1]:{port}/w.bin",
                   "http://10.1.2.3/w.bin", "http://192.168.0.1/w.bin", "http://0.0.0.0/w.bin",
                   "http://169.254.169.254/latest/meta-data/", "http://[::ffff:127.0.0.1]/w",
                   "https://[fe80::1]/w.bin"):
        refused = client.post(f"{API}/download", headers=bob,
                              json={"model_id": "mine", "url": target})
        assert refused.status_code == 403, (target, refused.get_json())
        error = refused.get_json()["error"]
        assert (error["code"], error["details"]["rule"]) == ("FORBIDDEN", "public_address_only")
    assert not hub.requests and jobs(app) == []
    # A name that is public when the API checks it and loopback when the download connects
    # (DNS rebinding): each connection (first URL, redirect hop, retry) is checked again.
    real, answers = socket.getaddrinfo, iter(["93.184.216.34"])

    def dns(host: str, *args: Any, **kwargs: Any) -> Any:
        return real(next(answers, "127.0.0.1") if host == "models.example.org" else host,
                    *args, **kwargs)

    with mock.patch("socket.getaddrinfo", dns):
        rebound = client.post(f"{API}/download", headers=bob, json={
            "model_id": "mine", "url": f"http://models.example.org:{port}/files/w.bin"})
    assert rebound.status_code == 403, rebound.get_json()
    error = rebound.get_json()["error"]
    assert (error["code"], error["details"]["error_type"]) == ("DOWNLOAD_FAILED",
                                                               "BLOCKED_ADDRESS")
    assert not hub.requests  # the stand-in on loopback was never reached
    assert [j["status"] for j in jobs(app)] == ["failed"] and partials(app) == []
    assert "mine" not in [m.id for m in store(app).list()]


def test_a_model_stored_while_downloading_is_kept(
    client: FlaskClient, auth: Auth, hub: HubStandin, app: Flask, keeper: Path
) -> None:
    url = hub.add_file("late.bin", os.urandom(2_000_000))
    hub.delay = 0.02
    headers = auth.headers()
    assert client.post(f"{API}/download", headers=headers,
                       json={"model_id": "late", "url": url}).status_code == 202
    wait(client, "late", headers, lambda b: b["bytes_done"] > 0)
    store(app).register("late", keeper)  # e.g. an admin's import finished first
    status = wait(client, "late", headers, finished)
    assert status["status"] == "failed" and status["error"]["error_type"] == "ALREADY_STORED"
    assert store(app).verify("late").bytes == 1002 and partials(app) == []


def test_only_the_user_who_downloaded_the_stored_copy_may_remove_it(
    client: FlaskClient, auth: Auth, hub: HubStandin, app: Flask, keeper: Path
) -> None:
    admin, bob, carol = auth.headers(), auth.headers("bob"), auth.headers("carol")
    hub.add_repo("acme/tiny", tiny_model(10_000))
    body = {"model_id": "tiny", "repo_id": "acme/tiny"}
    assert client.post(f"{API}/download", headers=bob, json=body).status_code == 202
    assert wait(client, "tiny", bob, finished)["status"] == "completed"
    assert client.delete(f"{API}/tiny", headers=admin).status_code == 200
    assert client.post(f"{API}/download", headers=carol, json=body).status_code == 202
    assert wait(client, "tiny", carol, finished)["status"] == "completed"
    refused = client.delete(f"{API}/tiny", headers=bob)  # bob's copy is gone; this is carol's
    assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "FORBIDDEN"
    assert store(app).verify("tiny").path is not None
    assert client.delete(f"{API}/tiny", headers=carol).status_code == 200
    assert client.post(f"{API}/download", headers=carol, json=body).status_code == 202
    assert wait(client, "tiny", carol, finished)["status"] == "completed"
    assert client.delete(f"{API}/tiny", headers=admin).status_code == 200
    store(app).register("tiny", keeper)  # stored again, not by carol's download
    assert client.delete(f"{API}/tiny", headers=carol).status_code == 403
    assert client.delete(f"{API}/tiny", headers=admin).status_code == 200


class RemovalWitness(ModelStore):
    """A real store that runs ``during`` as a removal starts (to race a load against it)."""

    during: Callable[[str], None] = staticmethod(lambda _id: None)

    def remove(self, model_id: str) -> None:
        self.during(model_id)
        super().remove(model_id)


def test_a_load_racing_a_removal_is_refused(
    make_app: Callable[..., Flask], config: dict[str, Any], tmp_path: Path, keeper: Path
) -> None:
    fake, witness = LocalFake(), RemovalWitness(tmp_path / "witness")
    app = make_app(config, router=Router(fake), local=fake, store=witness)
    client = app.test_client()
    admin = Auth(client).headers()
    witness.register("victim", keeper)
    load = {"model_id": "victim"}
    assert client.post(f"{API}/load", headers=admin, json=load).status_code == 200
    raced: list[Any] = []

    def load_meanwhile(model_id: str) -> None:
        thread = threading.Thread(target=lambda: raced.append(
            app.test_client().post(f"{API}/load", headers=admin, json=load)))
        thread.start()
        thread.join(10)

    witness.during = load_meanwhile
    removed = client.delete(f"{API}/victim", headers=admin)
    assert removed.status_code == 200, removed.get_json()
    (answer,) = raced
    assert answer.status_code == 409 and "being removed" in answer.get_json()["error"]["message"]
    assert "victim" not in fake.in_memory and not (witness.root / "victim").exists()
    after = client.post(f"{API}/load", headers=admin, json=load)
    assert after.status_code == 404 and after.get_json()["error"]["code"] == "MODEL_NOT_FOUND"
