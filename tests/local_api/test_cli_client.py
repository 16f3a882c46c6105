"""`bridge login` / `logout`, a service that is down, the script against the real model.

A real service on loopback (a FakeBackend answers); the fixtures here (``service``, ``cli``,
``logged_in``, ``serving``) are shared with test_cli_chat.py and test_cli_admin.py.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge.backends.local import LocalBackend
from bridge.models.store import ModelStore
from bridge.router import Router
from local_api import create_app, shutdown
from tests.support.app import LiveServer
from tests.support.cli import (
    ANSWER,
    BRIDGE,
    PASSWORD,
    Result,
    Service,
    one_error_line,
    register,
)

pytestmark = pytest.mark.usefixtures("config_dir")


def test_login_stores_a_working_key_readable_by_the_user_only(
    service: Service, cli: Callable[..., Result], config_dir: Path
) -> None:
    result = cli("login", "--url", service.url + "/api/v1/", "--username", "alice",
                 "--password-stdin", stdin=PASSWORD + "\n")
    assert result.code == 0, result.err
    assert result.out.startswith(f"Logged in to {service.url} as alice; API key cb_")
    path = config_dir / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(config_dir.stat().st_mode) == 0o700
    stored = json.loads(path.read_text())
    assert stored["default_url"] == service.url
    key = stored["servers"][service.url]["api_key"]
    assert PASSWORD not in path.read_text()
    session = httpx.get(f"{service.url}/api/auth/session", timeout=10,
                        headers={"Authorization": f"Bearer {key}"}).json()
    assert session["is_authenticated"] is True
    # Later commands find the service and the key with no flags at all.
    assert cli("chat", "hello").out == ANSWER + "\n"
    # Logging in again replaces the stored key and revokes the old one.
    assert cli("login", "--username", "alice", "--password-stdin", stdin=PASSWORD + "\n").code == 0
    new_key = json.loads(path.read_text())["servers"][service.url]["api_key"]
    assert new_key != key
    old = httpx.get(f"{service.url}/api/v1/user/profile", timeout=10,
                    headers={"Authorization": f"Bearer {key}"})
    assert old.status_code == 401


def test_wrong_password_and_unknown_user_fail_alike(
    service: Service, cli: Callable[..., Result], config_dir: Path
) -> None:
    for user, password in (("alice", "wrong password"), ("nobody", PASSWORD)):
        result = cli("login", "--url", service.url, "--username", user, "--password-stdin",
                     stdin=password + "\n")
        assert one_error_line(result, 1) == "bridge: error: Invalid username or password\n"
    assert not (config_dir / "credentials.json").exists()


def test_logout_revokes_the_key(logged_in: Service, cli: Callable[..., Result],
                                config_dir: Path) -> None:
    key = json.loads((config_dir / "credentials.json").read_text())["servers"][
        logged_in.url]["api_key"]
    result = cli("logout")
    assert result.out == f"Logged out of {logged_in.url}; the API key was revoked\n"
    refused = httpx.get(f"{logged_in.url}/api/v1/user/profile", timeout=10,
                        headers={"Authorization": f"Bearer {key}"})
    assert refused.status_code == 401
    err = one_error_line(cli("chat", "hello", "--url", logged_in.url), 1)
    assert err == (f"bridge: error: not logged in to {logged_in.url}: run `bridge login --url "
                   f"{logged_in.url}` (or set BRIDGE_API_KEY, or pass --api-key)\n")


def test_server_down_says_so_in_one_line(cli: Callable[..., Result]) -> None:
    from tests.support.remote import free_port

    url = f"http://127.0.0.1:{free_port()}"
    for argv in (["chat", "hi", "--url", url], ["status", "--url", url, "--api-key", "cb_x"],
                 ["login", "--url", url, "--username", "a", "--password-stdin"]):
        err = one_error_line(cli(*argv, stdin="password\n"), 1)
        assert err.startswith(f"bridge: error: cannot reach the service at {url} ("), err


@pytest.mark.model
def test_installed_script_chats_with_the_real_model(
    app_config: dict[str, Any], model_store: ModelStore, local_backend: LocalBackend
) -> None:
    app = create_app({**app_config, "ratelimit_enabled": False}, router=Router(local_backend),
                     local=local_backend, store=model_store)
    try:
        with LiveServer(app) as server:
            register(server.url, "alice")
            env = {**os.environ, "BRIDGE_URL": server.url, "BRIDGE_PASSWORD": PASSWORD,
                   "XDG_CONFIG_HOME": str(app_config["home"] / "config")}
            login = subprocess.run([BRIDGE, "login", "--username", "alice"], env=env,
                                   capture_output=True, text=True, timeout=60)
            assert login.returncode == 0, login.stderr
            chat = subprocess.run([BRIDGE, "chat", "What is the capital of France?", "-t", "0",
                                   "-n", "16"], env=env, capture_output=True, text=True,
                                  timeout=120)
            assert chat.returncode == 0, chat.stderr
            assert "Paris" in chat.stdout and chat.stderr == ""
    finally:
        shutdown(app)
