"""The `bridge` command itself: the entry point, usage errors, and the commands that need no API."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from bridge.config import DEFAULT_MODEL_ID
from bridge.models.store import ModelStore
from local_api import create_app, shutdown
from local_api.cli.main import main
from tests.support.app import Auth
from tests.support.cli import BRIDGE


def run(*argv: str, env: dict[str, str] | None = None, stdin: str = "",
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The installed console script, as a user runs it."""
    return subprocess.run([BRIDGE, *argv], input=stdin, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def test_entry_point_help_lists_every_command_and_exit_codes() -> None:
    result = run("--help")
    assert result.returncode == 0, result.stderr
    for command in ("serve", "chat", "models", "status", "connect", "worker", "backup",
                    "restore", "user", "login", "logout"):
        assert f"    {command} " in result.stdout
    assert "exit codes:" in result.stdout and "130  interrupted" in result.stdout


@pytest.mark.parametrize("argv", [["chat"], ["models", "pull"], ["connect"], ["worker"],
                                  ["user", "create"], ["backup"], ["restore"], ["status"],
                                  ["login"], ["models", "rm"]])
def test_every_command_has_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*argv, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: bridge {' '.join(argv)}")
    assert "exit codes:" in out


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["chat", "--bogus"], "unrecognized arguments: --bogus (see `bridge chat --help`)"),
        (["chat", "-t", "warm"], "argument -t/--temperature: invalid float value: 'warm'"),
        (["models"], "the following arguments are required: COMMAND"),
        (["models", "load", "m", "--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["connect", "--worker-url", "http://x", "--client-id", "y"], "not allowed with"),
        (["chat", "hi", "--url", "localhost:5000"], "--url must start with http:// or https://"),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("bridge: error: ") and captured.err.count("\n") == 1
    assert expected in captured.err


def test_bad_flag_from_the_real_script_has_no_usage_dump() -> None:
    result = run("models", "load")
    assert result.returncode == 2
    assert result.stderr == ("bridge: error: the following arguments are required: model_id "
                             "(see `bridge models load --help`)\n")


def test_user_create_writes_the_local_database(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BRIDGE_PASSWORD", "correct horse")
    assert main(["user", "create", "root", "--email", "root@example.org", "--home",
                 str(home)]) == 0
    assert "created user root (id 1, role admin)" in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("battery staple\n"))
    monkeypatch.delenv("BRIDGE_PASSWORD")
    assert main(["user", "create", "bob", "--email", "bob@example.org", "--password-stdin",
                 "--home", str(home)]) == 0
    assert "(id 2, role user)" in capsys.readouterr().out
    # The service started afterwards on that home accepts both accounts with those passwords.
    app = create_app({"home": home, "prepare_model": False})
    try:
        auth = Auth(app.test_client())
        assert auth.login("root")["user_id"] == 1
        assert auth.login("bob", "battery staple")["user_id"] == 2
        profile = app.test_client().get(
            "/api/v1/user/profile",
            headers={"Authorization": f"Bearer {auth.login('root')['access_token']}"},
        ).get_json()
        assert profile["user"]["role"] == "admin"
    finally:
        shutdown(app)


def test_user_create_refuses_bad_input_and_keeps_data(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BRIDGE_PASSWORD", "correct horse")
    create = ["user", "create", "root", "--email", "root@example.org", "--home", str(home)]
    assert main(create) == 0
    capsys.readouterr()
    assert main(create) == 1  # taken: a conflict, not a usage error
    assert capsys.readouterr().err == "bridge: error: That username is already registered\n"
    monkeypatch.setenv("BRIDGE_PASSWORD", "short")
    assert main(["user", "create", "eve", "--email", "eve@example.org", "--home", str(home)]) == 2
    assert capsys.readouterr().err == "bridge: error: password must be 8 to 256 characters\n"
    monkeypatch.delenv("BRIDGE_PASSWORD")
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO(""))
    assert main(["user", "create", "eve", "--email", "eve@example.org", "--home", str(home)]) == 2
    assert "no password: use --password-stdin or set BRIDGE_PASSWORD" in capsys.readouterr().err
    app = create_app({"home": home, "prepare_model": False})
    try:
        Auth(app.test_client()).login("root")  # the first account is intact
    finally:
        shutdown(app)


def test_password_prompts_on_a_terminal(home: Path) -> None:
    import pexpect

    env = {**os.environ, "BRIDGE_HOME": str(home)}
    env.pop("BRIDGE_PASSWORD", None)
    command = [BRIDGE, "user", "create", "root", "--email", "root@example.org"]
    child = pexpect.spawn(command[0], command[1:], env=env, encoding="utf-8", timeout=30)
    child.expect_exact("Password: ")
    child.sendline("correct horse")
    child.expect_exact("Password (again): ")
    child.sendline("correct horsf")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 2
    assert "bridge: error: the two passwords differ" in str(child.before)
    child = pexpect.spawn(command[0], command[1:], env=env, encoding="utf-8", timeout=30)
    child.expect_exact("Password: ")
    child.sendeof()  # Ctrl-D: one line, no traceback
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 2
    assert "bridge: error: no input" in str(child.before) and "Traceback" not in str(child.before)
    child = pexpect.spawn(command[0], command[1:], env=env, encoding="utf-8", timeout=30)
    for prompt in ("Password: ", "Password (again): "):
        child.expect_exact(prompt)
        child.sendline("correct horse")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert "created user root (id 1, role admin)" in str(child.before)
    assert "correct horse" not in str(child.before)  # never echoed


def test_password_never_on_argv(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["user", "create", "x", "--email", "x@example.org", "--password", "p"]) == 2
    assert "unrecognized arguments: --password p" in capsys.readouterr().err


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_serve_starts_answers_and_stops(tmp_path: Path, stop: signal.Signals) -> None:
    env = {"BRIDGE_HOME": str(tmp_path / "home"), "BRIDGE_PREPARE_MODEL": "false",
           "BRIDGE_KEEP_ALIVE": "0"}
    command = [BRIDGE, "serve", "--port", "0"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                          env={**os.environ, **env}) as process:
        try:
            assert process.stdout is not None
            first = process.stdout.readline()
            assert first.startswith("Compute Bridge listening on http://127.0.0.1:"), first
            url = first.split()[-1]
            assert process.stdout.readline().strip() == f"Data directory: {tmp_path / 'home'}"
            # next steps for a newcomer: the landing page, then an account, a login, a chat
            assert process.stdout.readline().startswith(f"Next: open {url}/ for the docs")
            steps = [process.stdout.readline().strip() for _ in range(3)]
            assert steps[1] == f"bridge login --username NAME --url {url}"
            assert steps[2] == 'bridge chat "Hello!"'
            assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
        finally:
            process.send_signal(stop)
            # gunicorn: the worker shuts the app down, then the master exits (1-5 s here; more
            # when the machine is busy)
            assert process.wait(timeout=60) == 0


def test_serve_tls_needs_both_files(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    assert main(["serve", "--port", "0", "--home", str(home), "--tls-cert", "c.pem"]) == 2
    assert capsys.readouterr().err == "bridge: error: TLS needs both --tls-cert and --tls-key\n"


def test_worker_runs_here_with_secret_from_env(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    env = {**os.environ, "BRIDGE_WORKER_SECRET": "worker-secret-for-tests"}
    log = tmp_path / "worker.log"
    with log.open("w") as sink, subprocess.Popen(
        [BRIDGE, "worker", "--backend", "echo", "--port", "0", "--ready-file", str(ready)],
        stdout=sink, stderr=subprocess.STDOUT, env=env,
    ) as process:
        try:
            deadline = time.monotonic() + 30
            while not ready.exists() and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert ready.exists(), log.read_text()
            url = json.loads(ready.read_text())["url"]
            assert url.startswith("http://127.0.0.1:")
            assert httpx.get(f"{url}/health", timeout=10).json()["status"] == "ok"
            assert httpx.get(f"{url}/info", timeout=10).status_code == 401  # unsigned: refused
        finally:
            process.terminate()
            process.wait(timeout=20)


def test_worker_without_secret_says_how(capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BRIDGE_WORKER_SECRET", raising=False)
    assert main(["worker", "--backend", "echo"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bridge: error: the worker needs a secret: pass --secret-file PATH")
    assert main(["worker", "--secret-file", "/nonexistent/secret"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_models_prepare_fills_the_store(
    model_store: ModelStore, home: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("BRIDGE_MODELS_HOME", str(model_store.root))
    assert main(["models", "prepare", "--home", str(home)]) == 0
    assert capsys.readouterr().out == f"{DEFAULT_MODEL_ID}: ready in {model_store.root}\n"
    assert model_store.is_complete(DEFAULT_MODEL_ID)


def test_serve_on_a_busy_port_is_one_line_with_the_fix(
    capsys: pytest.CaptureFixture[str], home: Path
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "--port", str(port), "--home", str(home)]) == 1
    err = capsys.readouterr().err
    assert err == (f"bridge: error: port {port} on 127.0.0.1 is already in use (another "
                   f"`bridge serve`?): stop it, or start on another port: `make run "
                   f"PORT={port + 1}` or `bridge serve --port {port + 1}`\n")
