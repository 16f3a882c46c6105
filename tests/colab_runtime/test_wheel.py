"""The service's own wheel: built once per version, uploaded through the runtime's Jupyter
contents API, installed by the notebook unless the runtime has this exact build."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path
from typing import Any

import pytest

from colab_runtime import notebook, wheel
from tests.support.remote import Jupyter

REAL_FIND_SPEC = importlib.util.find_spec


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return wheel.own_wheel(tmp_path_factory.mktemp("home"))


def test_the_wheel_is_built_once_per_version(own: Path) -> None:
    assert own.name == f"compute_bridge-{wheel.version()}-py3-none-any.whl"
    assert own.parent.name == wheel.version()
    built = own.stat().st_mtime_ns
    assert wheel.own_wheel(own.parent.parent.parent) == own
    assert own.stat().st_mtime_ns == built  # cached, not rebuilt


def test_the_wheel_goes_up_through_the_contents_api(own: Path, jupyter: Jupyter) -> None:
    spec = wheel.upload(jupyter.url, {}, own, token=jupyter.token)
    assert spec == f"./{own.name}"
    assert (jupyter.root / own.name).read_bytes() == own.read_bytes()


def run_install_cell(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *, present: bool,
                     build: str) -> list[list[str]]:
    """The notebook's install cell, as the kernel runs it, with pip recorded instead of run."""
    monkeypatch.setenv("HOME", str(tmp_path))
    calls: list[list[str]] = []
    monkeypatch.setattr(subprocess, "run", lambda args, **_: calls.append(list(args)))
    real = REAL_FIND_SPEC
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: (real(name, *a) if present else None)
                        if name == "colab_runtime" else real(name, *a))
    scope: dict[str, Any] = {"package_spec": "./compute_bridge-x.whl", "package_build": build}
    exec(notebook._INSTALL, scope)  # noqa: S102 (the cell's own code)
    return calls


def test_a_fresh_runtime_installs_the_uploaded_wheel_and_remembers_the_build(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    build = f"{wheel.version()}+abc"
    calls = run_install_cell(monkeypatch, tmp_path, present=False, build=build)
    assert calls and calls[0][-1] == "./compute_bridge-x.whl" and "pip" in calls[0]
    assert (tmp_path / ".cache" / "compute-bridge.build").read_text() == build
    assert run_install_cell(monkeypatch, tmp_path, present=True, build=build) == []  # same build
    assert run_install_cell(monkeypatch, tmp_path, present=True, build=build + "d")  # another


def test_a_runtime_with_this_version_and_no_build_marker_skips_pip(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert run_install_cell(monkeypatch, tmp_path, present=True,
                            build=f"{wheel.version()}+abc") == []
    assert run_install_cell(monkeypatch, tmp_path, present=True, build="0.0.1+abc")
