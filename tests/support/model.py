"""Session fixtures for the real default model: one converted store, one LocalBackend on
transformers, one on llama.cpp (straight from the packaged GGUF), and the real app on the latter."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from bridge.backends.local import LocalBackend
from bridge.config import DEFAULT_MODEL_ID, EMBEDDING_MODEL_ID
from bridge.models.convert import prepare_default_model
from bridge.models.store import ModelStore
from bridge.router import Router
from local_api import create_app, shutdown


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
    backend = LocalBackend(model_store, keep_alive=None, engine="transformers")
    backend.load(DEFAULT_MODEL_ID)
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def llama_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBackend]:
    """One LocalBackend serving the default model's packaged GGUF with llama.cpp (no
    conversion, an empty store), shared by the session."""
    store = ModelStore(tmp_path_factory.mktemp("gguf-models"))
    backend = LocalBackend(store, keep_alive=None, engine="llama.cpp", threads=2)
    backend.load(DEFAULT_MODEL_ID)
    yield backend
    backend.close()


@pytest.fixture
def llama_app(app_config: dict[str, Any], llama_backend: LocalBackend) -> Iterator[Flask]:
    """The real app with ``llama_backend`` as its local backend (the session's llama-server):
    a module uses it with ``def app(llama_app): return llama_app``."""
    application = create_app(app_config, router=Router(llama_backend), local=llama_backend,
                             store=llama_backend.store)  # fmt: skip
    yield application
    shutdown(application)


def tiny_model(source: Path, dest: Path) -> Path:
    """A randomly initialised two-layer Llama with the default model's tokenizer (fast to load)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(source))
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                         max_position_embeddings=256)
    LlamaForCausalLM(config).save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    return dest


@pytest.fixture(scope="session")
def embedding_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBackend]:
    """One LocalBackend with the default embedding model (all-MiniLM-L6-v2, unpacked from
    its package into an empty store on load), shared by the session."""
    store = ModelStore(tmp_path_factory.mktemp("embedding-models"))
    backend = LocalBackend(store, keep_alive=None)
    backend.load(EMBEDDING_MODEL_ID)
    yield backend
    backend.close()
