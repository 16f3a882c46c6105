"""Session fixtures for the real default model: one converted store, one loaded LocalBackend."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.backends.local import LocalBackend
from bridge.config import DEFAULT_MODEL_ID
from bridge.models.convert import prepare_default_model
from bridge.models.store import ModelStore


@pytest.fixture(scope="session")
def model_store(tmp_path_factory: pytest.TempPathFactory) -> ModelStore:
    """A store holding the converted default model (converted once per session).

    ``BRIDGE_TEST_MODELS=/some/dir`` keeps the converted model between runs (a developer's
    shortcut); unset, as in CI, each session converts into a fresh temp dir.
    """
    cache = os.environ.get("BRIDGE_TEST_MODELS")
    store = ModelStore(Path(cache) if cache else tmp_path_factory.mktemp("models"))
    prepare_default_model(store)
    return store


@pytest.fixture(scope="session")
def local_backend(model_store: ModelStore) -> Iterator[LocalBackend]:
    """One LocalBackend with the default model loaded, shared by the session."""
    backend = LocalBackend(model_store, keep_alive=None)
    backend.load(DEFAULT_MODEL_ID)
    yield backend
    backend.close()
