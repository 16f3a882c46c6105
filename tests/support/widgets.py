"""The notebook widgets' tests share these: the real app on a fake local backend, a user's
SDK client in-process, and small helpers (a plugin fixture module, see tests/conftest.py)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from flask import Flask

from bridge import Client
from bridge.models.store import ModelStore
from bridge.router import Router
from tests.support.fakes import LocalFake
from tests.support.hub_standin import HubStandin
from tests.support.remote import Google

PASSWORD = "correct horse"
SECRET = "a-worker-secret-of-some-length"


# Named widget_* so that this plugin, loaded for the whole suite, never stands in for the
# core ``fake``/``app`` fixtures of other tests; the widget test modules alias them.
@pytest.fixture
def widget_fake() -> Iterator[LocalFake]:
    backend = LocalFake(loaded=True)
    yield backend
    backend.release()


@pytest.fixture
def widget_app(make_app: Callable[..., Flask], home: Path, widget_fake: LocalFake,
               tmp_path: Path, hub: HubStandin, google: Google) -> Flask:  # noqa: F811
    fake = widget_fake
    return make_app({"home": home, "hf_endpoint": hub.url, "download_timeout": 5,
                     "download_retries": 0, "ratelimit_enabled": False},
                    router=Router(fake), local=fake, store=ModelStore(tmp_path / "models"),
                    google=google.endpoints)


def user(app: Flask, name: str = "alice") -> Client:
    """A client for ``name`` (registered now; the first one is the admin)."""
    client = Client("http://localhost", username=name, password=PASSWORD,
                    transport=httpx.WSGITransport(app=app))
    client.auth.register(name, f"{name}@example.org", PASSWORD)
    return client


@pytest.fixture
def sdk(widget_app: Flask) -> Iterator[Client]:
    with user(widget_app) as client:
        yield client


def until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True
