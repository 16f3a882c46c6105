"""Schemathesis against /api/v1/openapi.json: the app it fuzzes, the envelope check, `make fuzz`.

`make fuzz` (``python -m tests.support.fuzzing``) serves the app on a loopback port and runs the
schemathesis CLI over every operation, with and without credentials; test_fuzz.py runs a
bounded in-process pass of the same checks inside `make test`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import schemathesis
from flask import Flask

from bridge.models.store import ModelStore
from bridge.router import Router
from local_api import create_app, shutdown
from tests.support.fakes import LocalFake

ROOT = Path(__file__).resolve().parents[2]
CODE = re.compile(r"^[A-Z][A-Z_]*$")
DUPLICATES = r"^/api/(?!v1/)"  # /api/x serves the same views as /api/v1/x
# With the admin's token, also leave out what would end its session or demote it
# (test_fuzz.py covers those with a sacrificial account and at the end of its run).
UPSTREAM = ("DOWNLOAD_FAILED", "BACKEND_UNAVAILABLE")
EXCLUDE = DUPLICATES + r"|^/api/v1/auth/logout$|^/api/v1/admin/users/"
PASSWORD = "fuzz-password-1"




@dataclass
class Target:
    """The app under fuzzing and the credentials to use on it."""

    app: Flask
    admin: dict[str, str]
    victim_id: int  # an account the fuzzer may disable or demote (never the admin)


def build(home: Path) -> Target:
    """The real app (fake backend, no rate limit) with an admin and a second account."""
    local = LocalFake(default="A canned answer from the fuzzing backend.")
    app = create_app({"home": home, "prepare_model": False, "ratelimit_enabled": False,
                      "backup_retention": 3}, router=Router(local), local=local,
                     store=ModelStore(home / "models"))
    client = app.test_client()
    for name in ("admin", "victim"):
        r = client.post("/api/auth/register", json={
            "username": name, "email": f"{name}@example.org", "password": PASSWORD})
        assert r.status_code == 201, r.get_json()
    victim_id = 2
    token = client.post("/api/v1/auth/login", json={"username": "admin", "password": PASSWORD}
                        ).get_json()["access_token"]
    return Target(app, {"Authorization": f"Bearer {token}"}, victim_id)


def _envelope(error: Any) -> bool:
    return (isinstance(error, dict) and isinstance(error.get("code"), str)
            and bool(CODE.match(error["code"])) and isinstance(error.get("message"), str)
            and isinstance(error.get("request_id"), str))


def _openai(error: Any) -> bool:
    return isinstance(error, dict) and isinstance(error.get("message"), str) and isinstance(
        error.get("type"), str)


def bad_headers(headers: Any) -> str | None:
    """A header value an HTTP server could not send (non latin-1, control characters)."""
    for name, values in headers.items():
        for value in values if isinstance(values, list) else [values]:
            if not (value.isascii() and value.isprintable()):
                return f"header {name} cannot go on the wire: {value[:80]!r}"
    return None


def problem(path: str, status: int, content_type: str, body: bytes) -> str | None:
    """What is wrong with one answer, or None: no server error, every error in its envelope.

    502/503 with DOWNLOAD_FAILED or BACKEND_UNAVAILABLE are the documented answers when an
    upstream (the Hub, a runtime the request named) cannot be reached, as here with no
    network; any other 5xx, INTERNAL_ERROR above all, is a failure.
    """
    if status < 400:
        return None
    if "json" not in content_type:
        return f"error {status} is not JSON ({content_type}): {body[:200]!r}"
    try:
        error = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return f"error {status} without an error object: {body[:300]!r}"
    # The OpenAI-compatible surface answers in OpenAI's shape (ours where Flask routes nothing),
    # the Ollama-compatible one in Ollama's: {"error": "message"}, no code.
    ollama = path.startswith("/ollama/") and isinstance(error, str) and bool(error)
    ok = _envelope(error) or (path.startswith("/v1/") and _openai(error)) or ollama
    if not ok:
        return f"error {status} is not the envelope: {body[:300]!r}"
    if status >= 500:
        code = "" if ollama else str(error.get("code") or "").upper()  # OpenAI's: lower case
        upstream = status in (502, 503) and (
            code in UPSTREAM or ollama and "internal" not in error.lower())
        if not upstream:
            return f"server error {status}: {body[:300]!r}"
    return None


def content_type(response: Any) -> str:
    """The Content-Type of a schemathesis response (its headers map names to lists)."""
    for name, value in response.headers.items():
        if name.lower() == "content-type":
            return str(value[0] if isinstance(value, list) else value)
    return ""


@schemathesis.check
def error_envelope(ctx: Any, response: Any, case: Any) -> None:
    """Schemathesis check for the CLI run: the same rule as ``problem``."""
    found = problem(case.path, response.status_code, content_type(response), response.content)
    if found or (found := bad_headers(response.headers)):
        raise AssertionError(found)


def main(argv: list[str] | None = None) -> int:
    """`make fuzz`: the schemathesis CLI against a live server, authenticated and not."""
    parser = argparse.ArgumentParser(prog="make fuzz")
    parser.add_argument("--max-examples", type=int, default=int(os.environ.get("FUZZ_EXAMPLES",
                                                                                 "50")))
    args = parser.parse_args(argv)
    from tests.support.app import LiveServer

    with tempfile.TemporaryDirectory() as tmp:
        target = build(Path(tmp) / "home")
        try:
            with LiveServer(target.app) as server:
                failed = 0
                for label, headers in (("authenticated", target.admin), ("anonymous", {})):
                    command = [
                        str(Path(sys.executable).with_name("schemathesis")), "run",
                        f"{server.url}/api/v1/openapi.json", "--url", server.url,
                        "--checks", "error_envelope", "--request-timeout", "30",
                        "--max-examples", str(args.max_examples), "--workers", "1",
                        "--exclude-path-regex", EXCLUDE if headers else DUPLICATES,
                        "--phases", "examples,coverage,fuzzing",
                    ]
                    for name, value in headers.items():
                        command += ["--header", f"{name}: {value}"]
                    print(f"== schemathesis, {label} ==", flush=True)
                    # Run in the temp dir: schemathesis keeps replay data in ./.schemathesis
                    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.support.fuzzing",
                           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get(
                               "PYTHONPATH", "")]).rstrip(os.pathsep)}
                    failed += subprocess.run(command, env=env, cwd=tmp,
                                             check=False).returncode != 0
        finally:
            shutdown(target.app)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
