"""The on-disk catalog of local models: manifests with sha256, atomic writes, LRU eviction."""

from __future__ import annotations

import builtins
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from bridge import config
from bridge.config import DEFAULT_MODEL_FILE, DEFAULT_MODEL_ID, DEFAULT_MODEL_PACKAGE
from bridge.errors import BackendUnavailable, Conflict, ModelNotFound, ValidationError

MANIFEST = "manifest.json"
USAGE = "usage.json"
STATUSES = ("ready", "available", "downloading", "error")
# A model's default generation parameters (FT's ``parameters``): what a request that omits
# one gets (bridge.params.with_defaults). A download's come from its generation_config.json.
GENERIC_PARAMETERS: dict[str, float | int] = {"temperature": 0.7, "top_p": 0.9, "top_k": 50}
# Ollama's defaults (its docs' Modelfile PARAMETER table: temperature 0.8, top_k 40, top_p 0.9,
# repeat_penalty 1.1), for GGUF models as Ollama serves them: the default model and GGUF
# downloads. The penalty keeps the default model from looping on one line of a short poem.
OLLAMA_PARAMETERS: dict[str, float | int] = {
    "temperature": 0.8, "top_p": 0.9, "top_k": 40, "repetition_penalty": 1.1}
QUANTIZATIONS = ("none", "fp32", "bf16", "fp16", "int8-dynamic", "8bit", "4bit")


class ModelCorrupted(BackendUnavailable):
    """A stored model whose files are missing or do not match their manifest."""

    default_message = "Model files are corrupt; remove and prepare the model again"


@dataclass
class ModelInfo:
    """What the API shows about one model, and where its files live."""

    id: str
    name: str
    family: str
    size: str
    type: str = "chat"  # or "embedding" (bridge.models.embedding)
    dimensions: int = 0  # an embedding model's vector size
    pooling: str = ""  # an embedding model's pooling ("mean, normalized")
    status: str = "available"
    parameters: dict[str, float | int] = field(default_factory=lambda: dict(GENERIC_PARAMETERS))
    quantization: list[str] = field(default_factory=lambda: list(QUANTIZATIONS))
    framework: str = "transformers"
    format: str = "safetensors"  # or gguf (served by llama.cpp)
    gguf_type: str = ""  # a GGUF's quantization (Q4_K_M, Q8_0, ...)
    source: str = ""
    path: Path | None = None
    bytes: int = 0
    last_used: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (path as a string)."""
        data = asdict(self)
        data["path"] = str(self.path) if self.path else None
        return data


BUILTIN: dict[str, ModelInfo] = {
    DEFAULT_MODEL_ID: ModelInfo(
        parameters=dict(OLLAMA_PARAMETERS),
        id=DEFAULT_MODEL_ID,
        name="SmolLM2 135M Instruct",
        family="SmolLM2",
        size="135M",
        format="gguf",
        framework="llama.cpp",  # the packaged GGUF; a converted copy's manifest says transformers
        gguf_type="Q4_1",
        source=f"pypi:{DEFAULT_MODEL_PACKAGE} ({DEFAULT_MODEL_FILE})",
    ),
    config.EMBEDDING_MODEL_ID: ModelInfo(
        id=config.EMBEDDING_MODEL_ID, name="all-MiniLM-L6-v2", family="BERT", size="22M",
        type="embedding", dimensions=384, pooling="mean, normalized", parameters={},
        quantization=["none"], source=f"pypi:{config.EMBEDDING_MODEL_PACKAGE} (model.zip)"),
}
_META_FIELDS = tuple("name family size type dimensions pooling parameters quantization framework "
                     "format gguf_type source".split())


def sha256_file(path: Path) -> str:
    """Hex sha256 of one file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_json_atomic(path: Path, data: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
    os.replace(tmp, path)


class ModelStore:
    """Models under ``root/<id>/``, each with a manifest; least recently used go over budget."""

    def __init__(self, root: Path, budget_bytes: int | None = None) -> None:
        self.root = Path(root)
        self.budget_bytes = budget_bytes
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._pinned: dict[str, int] = {}
        self._status: dict[str, str] = {}
        usage = self.root / USAGE
        self._usage: dict[str, float] = json.loads(usage.read_text()) if usage.exists() else {}

    def _check_id(self, model_id: str) -> None:
        if not model_id or "/" in model_id or model_id.startswith(".") or "\\" in model_id:
            raise ValidationError(f"Invalid model id {model_id!r}")

    def _manifest(self, model_id: str) -> dict[str, Any] | None:
        path = self.root / model_id / MANIFEST
        if not path.is_file():
            return None
        data: dict[str, Any] = json.loads(path.read_text())
        return data

    def list(self) -> list[ModelInfo]:
        """Built-in models and every model on disk, ready ones first, then by id."""
        with self._lock:
            ids = set(BUILTIN) | {p.parent.name for p in self.root.glob(f"*/{MANIFEST}")}
            ids |= set(self._status)
            infos = [self._info(i) for i in ids]
        return sorted((i for i in infos if i), key=lambda m: (m.status != "ready", m.id))

    def _info(self, model_id: str) -> ModelInfo | None:
        manifest = self._manifest(model_id)
        base = BUILTIN.get(model_id)
        if manifest is None:
            if base is None and model_id not in self._status:
                return None
            base = base or ModelInfo(id=model_id, name=model_id, family="", size="")
            return replace(base, status=self._status.get(model_id, "available"))
        meta = {k: v for k, v in manifest.get("meta", {}).items() if k in _META_FIELDS}
        base = base or ModelInfo(id=model_id, name=model_id, family="", size="")
        return replace(
            base,
            **meta,
            status=self._status.get(model_id, "ready"),
            path=self.root / model_id,
            bytes=sum(int(f["bytes"]) for f in manifest["files"].values()),
            last_used=self._usage.get(model_id, 0.0),
        )

    def has(self, model_id: str) -> bool:
        """Whether ``model_id`` is in the catalog (built in, on disk, or being fetched)."""
        try:
            self._check_id(model_id)
        except ValidationError:
            return False
        with self._lock:
            return self._info(model_id) is not None

    def defaults(self, model_id: str) -> dict[str, float | int]:
        """A model's default generation parameters ({} when it is not in the catalog)."""
        with self._lock:
            info = self._info(model_id) if self.has(model_id) else None
        return dict(info.parameters) if info is not None else {}

    def get(self, model_id: str) -> ModelInfo:
        """One model; ModelNotFound when neither built in nor on disk."""
        with self._lock:
            info = self._info(model_id)
        if info is None:
            raise ModelNotFound(f"Model {model_id!r} not found", details={"model": model_id})
        return info

    def set_status(self, model_id: str, status: str | None) -> None:
        """Override the status shown (downloads in flight, failures); None clears it."""
        if status is not None and status not in STATUSES:
            raise ValidationError(f"Unknown status {status!r}")
        self._check_id(model_id)
        with self._lock:
            if status is None:
                self._status.pop(model_id, None)
            else:
                self._status[model_id] = status

    @contextmanager
    def staging(self) -> Iterator[Path]:
        """A temporary folder inside the store (same file system) to write a model into."""
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=".staging-"))
        try:
            yield tmp
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def register(self, model_id: str, path: Path, **meta: Any) -> ModelInfo:
        """Move the model files in ``path`` into the store atomically and write their manifest."""
        self._check_id(model_id)
        src = Path(path)
        if not src.is_dir():
            raise ValidationError(f"Model path {src} is not a folder")
        with self.staging() as tmp:
            dest = tmp / "model"
            if self.root.resolve() in src.resolve().parents:
                os.replace(src, dest)  # staged inside the store: a rename, no copy
            else:
                shutil.copytree(src, dest)
            files = {
                str(f.relative_to(dest)): {"sha256": sha256_file(f), "bytes": f.stat().st_size}
                for f in sorted(dest.rglob("*"))
                if f.is_file() and f.name != MANIFEST
            }
            if not files:
                raise ValidationError(f"Model path {src} holds no files")
            known = {k: v for k, v in meta.items() if k in _META_FIELDS}
            manifest = {"id": model_id, "files": files, "meta": known, "created": time.time()}
            _write_json_atomic(dest / MANIFEST, manifest)
            with self._lock:
                target = self.root / model_id
                if target.exists():
                    os.replace(target, tmp / "old")
                os.replace(dest, target)
                self._status.pop(model_id, None)
                self.touch(model_id)
        self.evict(keep=model_id)
        return self.get(model_id)

    def verify(self, model_id: str) -> ModelInfo:
        """Re-hash every file against the manifest; ModelCorrupted names the first bad file."""
        info = self.get(model_id)
        manifest = self._manifest(model_id)
        if manifest is None or info.path is None:
            raise ModelNotFound(f"Model {model_id!r} is not stored here", details={"id": model_id})
        for name, entry in manifest["files"].items():
            file = info.path / name
            if not file.is_file():
                raise ModelCorrupted(f"Model {model_id!r}: file {name} is missing",
                                     details={"model": model_id, "file": name})
            if file.stat().st_size != entry["bytes"] or sha256_file(file) != entry["sha256"]:
                raise ModelCorrupted(f"Model {model_id!r}: file {name} does not match its "
                                     "sha256 in the manifest",
                                     details={"model": model_id, "file": name})
        return info

    def is_complete(self, model_id: str) -> bool:
        """Cheap check (no hashing): manifest present and every file has its recorded size."""
        manifest = self._manifest(model_id)
        if manifest is None:
            return False
        base = self.root / model_id
        return all(
            (base / n).is_file() and (base / n).stat().st_size == e["bytes"]
            for n, e in manifest["files"].items()
        )

    def touch(self, model_id: str) -> None:
        """Record a use now (the LRU clock)."""
        with self._lock:
            self._usage[model_id] = max(time.time(), self._usage.get(model_id, 0.0) + 1e-6)
            _write_json_atomic(self.root / USAGE, self._usage)

    def pin(self, model_id: str) -> None:
        """Mark a model as in use (loaded): eviction skips it until unpinned."""
        with self._lock:
            self._pinned[model_id] = self._pinned.get(model_id, 0) + 1

    def unpin(self, model_id: str) -> None:
        """Undo one ``pin``."""
        with self._lock:
            left = self._pinned.get(model_id, 0) - 1
            if left > 0:
                self._pinned[model_id] = left
            else:
                self._pinned.pop(model_id, None)

    def remove(self, model_id: str) -> None:
        """Delete a model's files (Conflict while it is in use)."""
        with self._lock:
            if model_id in self._pinned:
                raise Conflict(f"Model {model_id!r} is loaded; unload it first")
            target = self.root / model_id
            if self._manifest(model_id) is None and not target.exists():
                self.get(model_id)  # ModelNotFound for unknown ids
                return
            trash = Path(tempfile.mkdtemp(dir=self.root, prefix=".trash-"))
            os.replace(target, trash / "model")
            self._usage.pop(model_id, None)
            _write_json_atomic(self.root / USAGE, self._usage)
        shutil.rmtree(trash, ignore_errors=True)

    def total_bytes(self) -> int:
        """Bytes of every model stored."""
        return sum(m.bytes for m in self.list() if m.status == "ready")

    def evict(self, keep: str | None = None) -> builtins.list[str]:
        """Remove least recently used, unpinned models (never ``keep``) until the budget fits."""
        if self.budget_bytes is None:
            return []
        evicted: builtins.list[str] = []
        with self._lock:
            ready = sorted((m for m in self.list() if m.path), key=lambda m: m.last_used)
            total = sum(m.bytes for m in ready)
            for model in ready:
                if total <= self.budget_bytes:
                    break
                if model.id in self._pinned or model.id == keep:
                    continue
                self.remove(model.id)
                total -= model.bytes
                evicted.append(model.id)
        return evicted
