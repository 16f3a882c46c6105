"""The worker notebook: the file, its parameters, where the launcher finds it, bad parameters."""

from __future__ import annotations

import os
import stat
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import nbformat
import papermill
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from bridge.errors import BackendUnavailable, ValidationError
from colab_runtime import notebook
from colab_runtime.launch import launch_worker

REPO_FILE = Path(__file__).resolve().parents[2] / "notebooks" / "colab_worker.ipynb"


def test_the_file_is_the_rendered_notebook() -> None:
    assert REPO_FILE.read_text() == notebook.render_worker_notebook(), (
        "notebooks/colab_worker.ipynb is stale: run python -m colab_runtime.notebook"
    )


def test_papermill_sees_the_parameters_and_the_kernel() -> None:
    declared = papermill.inspect_notebook(str(REPO_FILE))
    assert list(declared) == [
        "model_id", "quantization", "worker_secret", "tunnel", "ngrok_token", "port", "host",
        "package_spec", "package_build", "start_timeout",
    ]
    assert declared["port"]["inferred_type_name"] == "int"
    nb = nbformat.read(REPO_FILE, as_version=4)
    assert nb.metadata.kernelspec.name == "python3" and nb.metadata.language_info.name == "python"
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert "pip" in code[1] and "find_spec(\"colab_runtime\")" in code[1]
    assert code[2].count("start_worker(") == 1  # the one call; no logic of its own


def test_the_path_is_the_checkout_file_or_a_fresh_private_copy(monkeypatch, tmp_path) -> None:
    assert notebook.worker_notebook_path() == REPO_FILE
    monkeypatch.setattr(notebook, "REPO_NOTEBOOK", tmp_path / "absent.ipynb")  # installed
    monkeypatch.setattr(notebook.tempfile, "tempdir", str(tmp_path))
    planted = tmp_path / f"compute-bridge-{os.getuid()}"  # another local user got there first
    planted.mkdir(mode=0o777)
    (planted / notebook.NOTEBOOK_NAME).write_text("print(worker_secret)  # sent home")
    rendered = notebook.worker_notebook_path()
    assert rendered.parent != planted and rendered.parent.parent == tmp_path
    assert rendered.read_text() == REPO_FILE.read_text()
    assert stat.S_IMODE(rendered.parent.stat().st_mode) == 0o700
    assert notebook.worker_notebook_path().parent != rendered.parent  # one folder per launch
    mine = tmp_path / "mine"
    mine.mkdir()
    assert notebook.worker_notebook_path(mine) == mine / notebook.NOTEBOOK_NAME
    with pytest.raises(FileExistsError):  # never runs a notebook it did not write
        notebook.worker_notebook_path(mine)


def test_the_launcher_pins_this_version_and_a_package_spec_is_one_pip_argument() -> None:
    assert notebook.default_package_spec() == f"compute-bridge=={version('compute-bridge')}"
    for good in ("compute-bridge==0.1.0", "git+https://github.com/you/compute-bridge@v0.1.0",
                 "https://example.org/compute_bridge-0.1.0-py3-none-any.whl",
                 "/wheels/compute_bridge-0.1.0-py3-none-any.whl",
                 "compute-bridge @ git+https://github.com/you/compute-bridge"):
        assert notebook.check_package_spec(good) == good
    for bad in ("", "-e .", "--index-url=https://evil.example", "compute-bridge -i http://x",
                "a\n-r reqs.txt", " compute-bridge", None):
        with pytest.raises(ValidationError) as caught:
            notebook.check_package_spec(bad)
        assert caught.value.details == {"field": "package_spec"}
    nb = nbformat.read(REPO_FILE, as_version=4)
    assert "package_spec: str = ''" in nb.cells[1].source  # by hand: never a bare PyPI name


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


def test_a_hung_notebook_step_is_interrupted_at_the_execution_timeout(tmp_path) -> None:
    marker = tmp_path / "interrupted"
    hung = new_notebook(cells=[
        new_code_cell("seconds = 600", metadata={"tags": ["parameters"]}),
        new_code_cell("import time\ntry:\n    time.sleep(seconds)\n"
                      f"except KeyboardInterrupt:\n    open({str(marker)!r}, 'w').close()\n"
                      "    raise"),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                "language": "python"}})
    nbformat.write(hung, tmp_path / "hung.ipynb")
    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match="a step ran past 2 s") as caught:
        launch_worker(tmp_path / "hung.ipynb", {}, output_path=tmp_path / "o.ipynb",
                      execution_timeout=2)
    assert time.monotonic() - started < 30 and caught.value.details["reason"] == "launch_timeout"
    deadline = time.monotonic() + 10
    while not marker.exists() and time.monotonic() < deadline:  # its cleanup code ran
        time.sleep(0.05)
    assert marker.exists()
