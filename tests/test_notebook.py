"""The worker notebook: the file, its parameters, where the launcher finds it, bad parameters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import papermill
import pytest

from bridge.errors import BackendUnavailable, ValidationError
from colab_runtime import notebook
from colab_runtime.launch import launch_worker

REPO_FILE = Path(__file__).resolve().parent.parent / "notebooks" / "colab_worker.ipynb"


def test_the_file_is_the_rendered_notebook() -> None:
    assert REPO_FILE.read_text() == notebook.render_worker_notebook(), (
        "notebooks/colab_worker.ipynb is stale: run python -m colab_runtime.notebook"
    )


def test_papermill_sees_the_parameters_and_the_kernel() -> None:
    declared = papermill.inspect_notebook(str(REPO_FILE))
    assert list(declared) == [
        "model_id", "quantization", "worker_secret", "tunnel", "ngrok_token", "port", "host",
        "package_spec", "start_timeout",
    ]
    assert declared["port"]["inferred_type_name"] == "int"
    nb = nbformat.read(REPO_FILE, as_version=4)
    assert nb.metadata.kernelspec.name == "python3" and nb.metadata.language_info.name == "python"
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert "pip" in code[1] and "find_spec(\"colab_runtime\")" in code[1]
    assert code[2].count("start_worker(") == 1  # the one call; no logic of its own


def test_the_path_is_the_checkout_file_or_a_rendered_copy(monkeypatch, tmp_path) -> None:
    assert notebook.worker_notebook_path() == REPO_FILE
    monkeypatch.setattr(notebook, "REPO_NOTEBOOK", tmp_path / "absent.ipynb")  # installed
    monkeypatch.setattr(notebook.tempfile, "gettempdir", lambda: str(tmp_path))
    rendered = notebook.worker_notebook_path()
    assert rendered.parent.parent == tmp_path and rendered.read_text() == REPO_FILE.read_text()
    rendered.write_text("stale")
    assert notebook.worker_notebook_path().read_text() == REPO_FILE.read_text()


GOOD: dict[str, Any] = {"model_id": "m", "quantization": "none", "tunnel": "none",
                        "ngrok_token": "", "port": 0, "host": "127.0.0.1", "start_timeout": 60.0}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"model_id": " "}, "model_id"),
        ({"quantization": "3bit"}, "quantization"),
        ({"tunnel": "cloudflare"}, "tunnel"),
        ({"tunnel": "ngrok"}, "ngrok_token"),
        ({"port": 70000}, "port"),
        ({"port": True}, "port"),
        ({"host": ""}, "host"),
        ({"start_timeout": 0}, "start_timeout"),
    ],
)
def test_bad_values_name_the_parameter(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError, match=f"notebook parameter {field}") as caught:
        notebook.check_parameters(**{**GOOD, **change})
    assert caught.value.details == {"field": field}
    with pytest.raises(ValidationError):  # start_worker checks before starting anything
        notebook.start_worker(worker_secret="s" * 32, **{**GOOD, **change})


def test_a_bad_parameter_fails_the_notebook_run_with_its_message(tmp_path) -> None:
    with pytest.raises(ValidationError, match="unknown parameter 'tunel'"):
        launch_worker(REPO_FILE, {"tunel": "none"}, output_path=tmp_path / "o.ipynb")
    with pytest.raises(BackendUnavailable, match="ValidationError: notebook parameter ngrok_token"):
        launch_worker(REPO_FILE, {"tunnel": "ngrok", "worker_secret": "s" * 32},
                      output_path=tmp_path / "o.ipynb")
