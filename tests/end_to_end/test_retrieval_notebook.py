"""notebooks/retrieval.ipynb executed top to bottom by papermill (a real kernel from this venv)
against a live service with both default models, as `make run` serves them: the chat model
from its packaged GGUF (llama.cpp where built, else transformers) and the embedding model
unpacked from its package on first use."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import papermill
import pytest
from flask import Flask

from bridge.backends.local import LocalBackend
from bridge.config import DEFAULT_MODEL_ID, EMBEDDING_MODEL_ID
from bridge.models.store import ModelStore
from bridge.router import Router
from tests.support.app import LiveServer

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "retrieval.ipynb"
EVEREST = "Mount Everest is the highest mountain on Earth"

pytestmark = pytest.mark.model


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[LocalBackend]:
    """A fresh backend on an empty store with the service's defaults (engine auto)."""
    backend = LocalBackend(ModelStore(tmp_path / "models"), keep_alive=None, threads=2)
    yield backend
    backend.close()


def run(make_app: Callable[..., Flask], home: Path, tmp_path: Path, backend: LocalBackend,
        monkeypatch: pytest.MonkeyPatch, **parameters: object) -> list[dict[str, object]]:
    """Execute the notebook against a live service; each code cell's outputs."""
    app = make_app({"home": home}, router=Router(backend), local=backend, store=backend.store)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))  # no stored `bridge login`
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    out = tmp_path / "retrieval-out.ipynb"
    with LiveServer(app) as server:
        papermill.execute_notebook(
            str(NOTEBOOK), str(out), kernel_name="python3", cwd=str(ROOT), progress_bar=False,
            execution_timeout=300, parameters={
                "base_url": server.url, "start_server": False, "username": "rag-user",
                "password": "correct horse", "register": True, "email": "rag@example.org",
                **parameters})
    cells = [c for c in json.loads(out.read_text())["cells"] if c["cell_type"] == "code"]
    for cell in cells:
        for output in cell["outputs"]:
            assert output["output_type"] != "error", "".join(output.get("traceback", []))
    return cells


def text_of(cell: dict[str, object]) -> str:
    outputs = cell["outputs"]
    assert isinstance(outputs, list)
    return "".join("".join(o.get("text", "")) for o in outputs if o["output_type"] == "stream")


def test_retrieval_notebook_finds_the_relevant_document_and_answers(
        make_app: Callable[..., Flask], home: Path, tmp_path: Path, backend: LocalBackend,
        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    plot = tmp_path / "similarities.png"
    cells = run(make_app, home, tmp_path, backend, monkeypatch, plot_path=str(plot))
    _params, _injected, connect, embedded, nearest, answer, plotted = cells
    assert "| user: rag-user" in text_of(connect)
    assert f"6 documents -> 384 numbers each, model {EMBEDDING_MODEL_ID}" in text_of(embedded)
    assert "on local (transformers)" in text_of(embedded)
    ranking = text_of(nearest).splitlines()
    assert ranking[0].startswith("1. ") and EVEREST in ranking[0]  # the relevant one first
    top, second = (float(line.split()[1]) for line in ranking[:2])
    assert top > second + 0.2  # by a clear margin over the next one
    assert f"nearest: {EVEREST}" in text_of(nearest)
    said = text_of(answer)
    reply = said.split("answer:", 1)[1].split("\nbackend:", 1)[0].strip()
    assert reply and "backend: local" in said  # an answer, generated here
    assert "8,849" in reply or "8849" in reply  # from the retrieved fact
    assert DEFAULT_MODEL_ID in backend.loaded_models()
    assert EMBEDDING_MODEL_ID in backend.loaded_models()
    # the plot: shown inline (a PNG in the cell's outputs) and saved where asked
    images = [o["data"]["image/png"] for o in plotted["outputs"]  # type: ignore[index]
              if "image/png" in o.get("data", {})]  # type: ignore[union-attr,operator]
    assert len(images) == 1
    assert base64.b64decode(images[0]).startswith(b"\x89PNG")
    assert plot.read_bytes().startswith(b"\x89PNG") and plot.stat().st_size > 10_000
