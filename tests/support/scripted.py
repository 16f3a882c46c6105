"""The real app with a scripted backend behind its Router, and the official clients on it.

``fake`` is a ``LocalFake`` (canned answers, a history of requests: llm's test model), and
``scripted_app`` the real app on real SQLite with it as the local backend and an empty model
store. A module uses it with ``def app(scripted_app): return scripted_app``; ``key`` is a new
API key of a user registered through the real endpoints, ``oai`` the ``openai`` SDK on the
live server's /v1 with that key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from flask import Flask

from bridge.models.store import ModelStore
from bridge.router import Router
from tests.support.app import LiveServer
from tests.support.clients import api_key, openai_client
from tests.support.fakes import LocalFake


@pytest.fixture
def fake() -> LocalFake:
    return LocalFake()


@pytest.fixture
def scripted_app(make_app: Callable[..., Flask], app_config: dict[str, Any], fake: LocalFake,
                 tmp_path: Path) -> Flask:  # fmt: skip
    return make_app(app_config, router=Router(fake), local=fake,
                    store=ModelStore(tmp_path / "models"))  # fmt: skip


@pytest.fixture
def key(http: httpx.Client) -> str:
    return api_key(http)


@pytest.fixture
def oai(live_server: LiveServer, key: str) -> Iterator[openai.OpenAI]:
    with openai_client(live_server.url, key) as client:
        yield client
