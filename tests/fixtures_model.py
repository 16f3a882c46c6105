"""Session fixtures for the real default model: one converted store, one loaded LocalBackend."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bridge.convert import prepare_default_model
from bridge.local_backend import LocalBackend
from bridge.model_store import DEFAULT_MODEL_ID, ModelStore


@pytest.fixture(scope="session")
def model_store(tmp_path_factory: pytest.TempPathFactory) -> ModelStore:
    """A store in a session temp dir holding the converted default model (converted once)."""
    store = ModelStore(tmp_path_factory.mktemp("models"))
    prepare_default_model(store)
    return store


@pytest.fixture(scope="session")
def local_backend(model_store: ModelStore) -> Iterator[LocalBackend]:
    """One LocalBackend with the default model loaded, shared by the session."""
    backend = LocalBackend(model_store, keep_alive=None)
    backend.load(DEFAULT_MODEL_ID)
    yield backend
    backend.close()
