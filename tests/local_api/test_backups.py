"""Backups and restore through the API, on real SQLite files: data, refusals, faults, races."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import sqlite3
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from local_api.backups import store
from local_api.storage.migrations import LATEST_VERSION
from tests.support.app import Auth
from tests.support.remote import Google

ISO_WITH_OFFSET = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$")
API = "/api/v1"


@pytest.fixture
def admin(auth: Auth) -> dict[str, str]:
    return auth.headers("admin")  # the first account is the admin


def _usernames(client: FlaskClient, headers: dict[str, str]) -> list[str]:
    response = client.get(f"{API}/admin/users", headers=headers)
    assert response.status_code == 200, response.get_json()
    return [u["username"] for u in response.get_json()["users"]]


def _backup(client: FlaskClient, headers: dict[str, str]) -> dict[str, Any]:
    response = client.post(f"{API}/db/backup", headers=headers)
    assert response.status_code == 201, response.get_json()
    return dict(response.get_json())


def _listed(client: FlaskClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    response = client.get(f"{API}/db/backup", headers=headers)
    assert response.status_code == 200, response.get_json()
    return list(response.get_json()["backups"])


def _rewrite(home: Path, backup_id: str, change: Any) -> None:
    """Alter a backup's data file by hand, then record its new checksum (a 'valid' manifest)."""
    data = home / "backups" / f"{backup_id}.sqlite3"
    change(data)
    manifest_path = home / "backups" / f"{backup_id}.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["sha256"] = hashlib.sha256(data.read_bytes()).hexdigest()
    manifest["size"] = data.stat().st_size
    manifest_path.write_text(json.dumps(manifest))


def test_backup_and_restore_round_trip(client: FlaskClient, auth: Auth, admin, home: Path) -> None:
    auth.register("bob")
    made = _backup(client, admin)
    assert made["status"] == "completed" and ISO_WITH_OFFSET.match(made["timestamp"])
    file = home / "backups" / f"{made['backup_id']}.sqlite3"
    assert made["size"] == file.stat().st_size
    assert made["sha256"] == hashlib.sha256(file.read_bytes()).hexdigest()
    auth.register("carol")
    assert _usernames(client, admin) == ["admin", "bob", "carol"]

    response = client.post(f"{API}/db/restore/{made['backup_id']}", headers=admin)

    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["status"] == "restored" and ISO_WITH_OFFSET.match(body["restored_at"])
    assert _usernames(client, admin) == ["admin", "bob"]
    listed = {b["id"]: b for b in _listed(client, admin)}
    assert listed[body["safety_backup_id"]]["kind"] == "pre-restore"  # the undo is a backup
    events = client.get(f"{API}/audit?event=db_restore", headers=admin).get_json()["events"]
    assert events[0]["details"]["backup_id"] == made["backup_id"]
    with sqlite3.connect(home / "bridge.db") as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    # Undo the restore with the safety backup: carol is back.
    response = client.post(f"{API}/db/restore/{body['safety_backup_id']}", headers=admin)
    assert response.status_code == 200 and "carol" in _usernames(client, admin)


def test_backups_are_admin_only(client: FlaskClient, auth: Auth, admin) -> None:
    user = auth.headers("mallory")
    for method, path in (("get", "/db/backup"), ("post", "/db/backup"),
                         ("post", "/db/restore/20250101T000000Z-00000000")):
        anonymous = getattr(client, method)(f"{API}{path}")
        assert anonymous.status_code == 401
        assert anonymous.get_json()["error"]["code"] == "UNAUTHORIZED"
        refused = getattr(client, method)(f"/api{path}", headers=user)
        assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "FORBIDDEN"
    assert _listed(client, admin) == []


def test_backup_is_consistent_while_writes_continue(app: Flask, admin, home: Path) -> None:
    stop = threading.Event()
    written: list[int] = []
    statuses: list[int] = []

    def writer() -> None:
        local = app.test_client()
        n = 0
        while not stop.is_set():
            n += 1
            r = local.post("/api/auth/register", json={
                "username": f"user{n}", "email": f"u{n}@example.org", "password": "correct horse"})
            statuses.append(r.status_code)
            if r.status_code == 201:
                written.append(n)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while len(written) < 3:
            stop.wait(0.01)
        made = _backup(app.test_client(), admin)
        before = len(written)
        while len(written) < before + 2:  # writes went on after the backup
            stop.wait(0.01)
    finally:
        stop.set()
        thread.join(timeout=30)
    with sqlite3.connect(home / "backups" / f"{made['backup_id']}.sqlite3") as copy:
        assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        ids = [r[0] for r in copy.execute("SELECT id FROM users ORDER BY id")]
        assert copy.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # one file
    assert ids == list(range(1, len(ids) + 1))  # a snapshot: no holes, no half-written rows
    assert 3 <= len(ids) - 1 <= before < len(written)  # (admin is id 1)
    assert set(statuses) == {201}


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("truncated", "checksum_mismatch"),
        ("truncated_resealed", "not_a_database"),
        ("foreign", "foreign_database"),
        ("random_bytes", "not_a_database"),
        ("newer_schema", "newer_schema"),
    ],
)
def test_bad_backups_are_refused_and_live_data_untouched(
    client: FlaskClient, auth: Auth, admin, home: Path, damage: str, reason: str
) -> None:
    made = _backup(client, admin)
    bid = made["backup_id"]
    data = home / "backups" / f"{bid}.sqlite3"
    if damage == "truncated":
        data.write_bytes(data.read_bytes()[: made["size"] // 2])
    elif damage == "truncated_resealed":
        _rewrite(home, bid, lambda p: p.write_bytes(p.read_bytes()[:4096 + 100]))
    elif damage == "foreign":
        def other_app(p: Path) -> None:
            p.unlink()
            with sqlite3.connect(p) as conn:
                conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
        _rewrite(home, bid, other_app)
    elif damage == "random_bytes":
        _rewrite(home, bid, lambda p: p.write_bytes(os.urandom(8192)))
    else:
        def newer(p: Path) -> None:
            with sqlite3.connect(p) as conn:
                conn.execute("INSERT INTO schema_version (version, applied_at, note) "
                             "VALUES (?, '2030-01-01 00:00:00', 'from the future')",
                             (LATEST_VERSION + 1,))
        _rewrite(home, bid, newer)
    auth.register("bob")  # live data the refused restore must not touch
    before = len(_listed(client, admin))

    response = client.post(f"{API}/db/restore/{bid}", headers=admin)

    assert response.status_code == 400, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "VALIDATION_ERROR" and error["details"]["reason"] == reason
    assert error["request_id"]
    assert _usernames(client, admin) == ["admin", "bob"]
    assert len(_listed(client, admin)) == before  # no safety backup: nothing was swapped
    assert not [p for p in (home / "backups").iterdir() if p.name.endswith(".partial")]
    failures = client.get(f"{API}/audit?event=db_restore", headers=admin).get_json()["events"]
    assert failures[0]["outcome"] == "failure" and failures[0]["details"]["reason"] == reason


def test_older_backup_is_migrated_after_restore(client: FlaskClient, admin, home: Path) -> None:
    made = _backup(client, admin)

    def older(p: Path) -> None:
        with sqlite3.connect(p) as conn:
            conn.execute("DROP TABLE api_key_signing")
            conn.execute("DELETE FROM schema_version WHERE version >= 6")

    _rewrite(home, made["backup_id"], older)
    response = client.post(f"{API}/db/restore/{made['backup_id']}", headers=admin)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["schema_version"] == LATEST_VERSION
    key = client.post(f"{API}/auth/api-keys", headers=admin, json={"name": "after"})
    assert key.status_code == 201  # and the re-created tables work


def _only_lock_left(home: Path, names_before: set[str]) -> None:
    left = {p.name for p in (home / "backups").iterdir()}
    assert left - names_before <= {".lock"}, left - names_before


def test_disk_full_while_flushing_fails_cleanly(
    client: FlaskClient, auth: Auth, admin, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _backup(client, admin)
    names_before = {p.name for p in (home / "backups").iterdir()}

    def full(_fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    response = client.post(f"{API}/db/backup", headers=admin)
    monkeypatch.undo()

    assert response.status_code == 507, response.get_json()
    assert response.get_json()["error"]["code"] == "INSUFFICIENT_STORAGE"
    assert len(_listed(client, admin)) == 1  # the failed one is not listed
    _only_lock_left(home, names_before)
    auth.register("bob")
    assert _usernames(client, admin) == ["admin", "bob"]
    assert len(_listed(client, admin)) == 1 and _backup(client, admin)["status"] == "completed"


def test_too_little_free_space_is_refused_before_writing(
    client: FlaskClient, admin, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=4096))
    response = client.post(f"{API}/db/backup", headers=admin)
    assert response.status_code == 507
    assert response.get_json()["error"]["details"]["free_bytes"] == 4096
    monkeypatch.undo()
    assert _listed(client, admin) == []
    assert {p.name for p in (home / "backups").iterdir()} <= {".lock"}


def test_concurrent_restores_one_wins_the_other_conflicts(
    app: Flask, client: FlaskClient, auth: Auth, admin, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = _backup(client, admin)
    auth.register("bob")
    inside, release = threading.Event(), threading.Event()
    real_copy = shutil.copyfile

    def slow_copy(src: Any, dst: Any, **kwargs: Any) -> Any:
        inside.set()
        release.wait(30)  # a slow disk: the first restore is mid-way
        return real_copy(src, dst, **kwargs)

    monkeypatch.setattr(shutil, "copyfile", slow_copy)
    results: list[Any] = []
    first = threading.Thread(target=lambda: results.append(
        app.test_client().post(f"{API}/db/restore/{made['backup_id']}", headers=admin)))
    first.start()
    try:
        assert inside.wait(30)
        second = app.test_client().post(f"{API}/db/restore/{made['backup_id']}", headers=admin)
        backup_meanwhile = app.test_client().post(f"{API}/db/backup", headers=admin)
    finally:
        release.set()
        first.join(timeout=30)
    assert second.status_code == 409 and second.get_json()["error"]["code"] == "CONFLICT"
    assert backup_meanwhile.status_code == 409
    assert results[0].status_code == 200, results[0].get_json()
    assert _usernames(client, admin) == ["admin"]


HOSTILE_IDS = ["..", "...", "%2e%2e", "..%2fbridge.db", "20250101T000000Z-0000000G",
               "20250101T000000Z-00000000.json", "a" * 300, "%00", "20250101T000000Z-00000000%0a",
               "20250101T000000Z-00000000'%20OR%201=1--"]


def test_path_traversal_in_backup_ids(client: FlaskClient, auth: Auth, admin, home: Path) -> None:
    auth.register("bob")
    _backup(client, admin)
    for backup_id in HOSTILE_IDS:
        response = client.post(f"{API}/db/restore/{backup_id}", headers=admin)
        assert response.status_code in (400, 404), (backup_id, response.data)
        assert response.get_json()["error"]["code"] in ("VALIDATION_ERROR", "NOT_FOUND")
    assert _usernames(client, admin) == ["admin", "bob"]
    assert len(_listed(client, admin)) == 1


def test_retention_keeps_the_newest(make_app, home: Path) -> None:
    app = make_app({"home": home, "backup_retention": 2})
    client = app.test_client()
    headers = Auth(client).headers("admin")
    ids = [_backup(client, headers)["backup_id"] for _ in range(3)]
    assert [b["id"] for b in _listed(client, headers)] == ids[:0:-1]
    assert not (home / "backups" / f"{ids[0]}.sqlite3").exists()
    assert not (home / "backups" / f"{ids[0]}.json").exists()


def test_non_sqlite_database_is_not_supported(app: Flask, client: FlaskClient, admin) -> None:
    settings = app.config["SETTINGS"]
    app.config["SETTINGS"] = settings.with_overrides(
        database_url="postgresql://bridge@db.internal/bridge"
    )
    try:
        for method, path in (("get", "/db/backup"), ("post", "/db/backup"),
                             ("post", "/db/restore/20250101T000000Z-00000000")):
            response = getattr(client, method)(f"{API}{path}", headers=admin)
            assert response.status_code == 501
            error = response.get_json()["error"]
            assert error["code"] == "NOT_SUPPORTED" and "pg_dump" in error["message"]
            assert error["details"]["tool"] == "pg_dump"
    finally:
        app.config["SETTINGS"] = settings
    with pytest.raises(Exception, match="mysqldump"):
        store.database_path("mysql://u@h/db")


def test_revocations_survive_a_restore(client: FlaskClient, auth: Auth, admin) -> None:
    key = client.post(f"{API}/auth/api-keys", headers=admin, json={"name": "k"}).get_json()
    login = auth.login("admin")
    made = _backup(client, admin)
    # After the backup: revoke the key and log the second session out.
    assert client.delete(f"{API}/auth/api-keys/{key['id']}", headers=admin).status_code == 200
    bearer = {"Authorization": f"Bearer {login['access_token']}"}
    assert client.post(f"{API}/auth/logout", headers=bearer,
                       json={"refresh_token": login["refresh_token"]}).status_code == 200

    assert client.post(f"{API}/db/restore/{made['backup_id']}", headers=admin).status_code == 200

    assert client.get(f"{API}/user/profile", headers={"Authorization": f"Bearer {key['key']}"}
                      ).status_code == 401
    assert client.get(f"{API}/user/profile", headers=bearer).status_code == 401
    refresh = client.post(f"{API}/auth/refresh", json={"refresh_token": login["refresh_token"]})
    assert refresh.status_code == 401


def test_token_of_a_user_the_restore_removed_does_not_pass_to_a_new_account(
    client: FlaskClient, auth: Auth, admin, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = _backup(client, admin)
    bob = auth.headers("bob")  # id 2, created after the backup
    assert client.post(f"{API}/db/restore/{made['backup_id']}", headers=admin).status_code == 200
    from local_api.accounts import users
    from local_api.timeutil import utcnow

    monkeypatch.setattr(users, "utcnow", lambda: utcnow() + timedelta(seconds=5))  # clock
    carol_id = auth.register("carol")  # reuses id 2
    assert carol_id == 2
    response = client.get(f"{API}/user/profile", headers=bob)
    assert response.status_code == 401
    assert "before this account existed" in response.get_json()["error"]["message"]


def test_offsite_copy_to_drive_after_google_sign_in(
    make_app: Any, home: Path, google: Google
) -> None:
    from tests.support.remote import sign_in

    api = make_app({"home": home}, google=google.endpoints).test_client()
    headers = Auth(api).headers("admin")
    refused = api.post(f"{API}/db/backup", headers=headers, json={"offsite": "drive"})
    assert refused.status_code == 400 and refused.get_json()["error"]["details"] == {
        "field": "offsite"}
    assert _listed(api, headers) == []  # refused before anything was written
    assert api.post(f"{API}/db/backup", headers=headers,
                    json={"offsite": "dropbox"}).status_code == 400

    consent = api.post(f"{API}/system/colab/connect", headers=headers,
                       json={"credentials": google.credentials, "manual": True}).get_json()
    assert sign_in(api, consent["auth_url"])["status"] == "authorized"
    made = api.post(f"{API}/db/backup", headers=headers, json={"offsite": "drive"})
    body = made.get_json()
    assert made.status_code == 201 and body["offsite"]["status"] == "uploaded", body
    uploaded = google.drive.files[body["offsite"]["drive_file_id"]]
    local = store.data_file(home / "backups", body["backup_id"]).read_bytes()
    assert uploaded["content"] == local  # the very bytes of the local backup
    assert hashlib.sha256(uploaded["content"]).hexdigest() == body["sha256"]
    assert uploaded["metadata"]["name"] == f"compute-bridge-{body['backup_id']}.sqlite3"

    google.drive.fail_next.append(500)
    failed = api.post(f"{API}/db/backup", headers=headers, json={"offsite": "drive"}).get_json()
    assert failed["offsite"]["status"] == "failed"
    assert failed["offsite"]["error"]["code"] == "BACKEND_UNAVAILABLE"
    assert failed["backup_id"] in [b["id"] for b in _listed(api, headers)]  # local copy stands


def test_a_restore_reattaches_the_workers_its_database_holds(make_app: Any, home: Path) -> None:
    from colab_runtime.worker import EchoBackend, WorkerServer, create_worker_app

    secret = "s" * 32
    worker = WorkerServer(create_worker_app(EchoBackend(), secret)).start()
    try:
        api = make_app({"home": home}).test_client()
        headers = Auth(api).headers("admin")
        before = api.post(f"{API}/db/backup", headers=headers).get_json()["backup_id"]
        attached = api.post(f"{API}/system/colab/connect", headers=headers, json={
            "worker_url": worker.url, "worker_secret": secret, "name": "gpu-box"})
        assert attached.status_code == 200, attached.get_json()
        restored = api.post(f"{API}/db/restore/{before}", headers=headers).get_json()
        assert restored["workers"] == {"attached": [], "dropped": ["gpu-box"]}
        names = [b["name"] for b in api.get(f"{API}/system/status",
                                            headers=headers).get_json()["backends"]]
        assert names == ["local"]  # the restored database never had gpu-box
        again = api.post(f"{API}/db/restore/{restored['safety_backup_id']}",
                         headers=headers).get_json()
        assert again["workers"]["attached"] == ["gpu-box"]
    finally:
        worker.stop()
