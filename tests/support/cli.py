"""The CLI against a real service on loopback: ``service``, ``cli``, ``logged_in`` fixtures."""

from __future__ import annotations

import io
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask

from bridge.models.store import ModelStore
from bridge.router import Router
from local_api import create_app, shutdown
from local_api.cli.main import main
from tests.support.app import LiveServer
from tests.support.fakes import LocalFake

BRIDGE = str(Path(sys.executable).with_name("bridge"))


def interruptible() -> None:
    """``preexec_fn`` for a CLI child that a test interrupts: Ctrl-C as at a terminal. A shell's
    background job (a CI runner's, say) starts with SIGINT ignored, the child inherits that, and
    Python then never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
PASSWORD = "correct horse"
ANSWER = "The capital of France is Paris."




@dataclass
class Service:
    url: str
    app: Flask
    fake: LocalFake

    def register(self, username: str) -> None:
        register(self.url, username)

    def token(self, username: str) -> str:
        answer = httpx.post(f"{self.url}/api/v1/auth/login", timeout=10,
                            json={"username": username, "password": PASSWORD})
        return str(answer.json()["access_token"])


def register(url: str, username: str) -> None:
    answer = httpx.post(f"{url}/api/auth/register", timeout=10, json={
        "username": username, "email": f"{username}@example.org", "password": PASSWORD})
    assert answer.status_code == 201, answer.text


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Stored logins go to a fresh config dir; no BRIDGE_* client variables leak in."""
    for name in ("BRIDGE_URL", "BRIDGE_API_KEY", "BRIDGE_USERNAME", "BRIDGE_PASSWORD",
                 "BRIDGE_WORKER_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return tmp_path / "config" / "compute-bridge"


@contextmanager
def serving(app_config: dict[str, Any], models: Path, **collaborators: Any) -> Iterator[Service]:
    """The real app over a LocalFake, on a loopback port, with alice (admin) registered."""
    fake = LocalFake(default=ANSWER)
    app = create_app({**app_config, "ratelimit_enabled": False}, router=Router(fake), local=fake,
                     store=ModelStore(models), **collaborators)
    try:
        with LiveServer(app) as server:
            service = Service(server.url, app, fake)
            service.register("alice")  # the first account: admin
            yield service
            fake.release()
    finally:
        shutdown(app)


@pytest.fixture
def service(app_config: dict[str, Any], tmp_path: Path) -> Iterator[Service]:
    with serving(app_config, tmp_path / "models") as running:
        yield running


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
        ) -> Callable[..., Result]:
    """Run `bridge ARGV` in-process with ``stdin``; its exit code, stdout and stderr."""

    def run(*argv: str, stdin: str = "") -> Result:
        capsys.readouterr()
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        code = main(list(argv))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def logged_in(service: Service, cli: Callable[..., Result]) -> Service:
    result = cli("login", "--url", service.url, "--username", "alice", "--password-stdin",
                 stdin=PASSWORD + "\n")
    assert result.code == 0, result.err
    return service


def one_error_line(result: Result, code: int) -> str:
    assert result.code == code, (result.out, result.err)
    assert result.err.startswith("bridge: error: ") and result.err.count("\n") == 1, result.err
    return result.err

