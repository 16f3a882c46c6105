"""The documentation stays true: the site builds with --strict, its reference is generated
from the code, and the quickstart's commands run as written against a live service."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bridge.config import Settings
from tests.support.live_process import serve

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
MKDOCS = str(Path(sys.executable).with_name("mkdocs"))
QUIET = {"NO_MKDOCS_2_WARNING": "1", "DISABLE_MKDOCS_2_WARNING": "true"}
BLOCK = re.compile(r"(<!-- docs-test: skip[^>]*-->\n)?```(bash|python)\n(.*?)```", re.S)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [MKDOCS, "build", "--strict", "--site-dir", str(out)], cwd=ROOT, capture_output=True,
        text=True, timeout=300, env={**os.environ, **QUIET, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return out


def _text(page: Path) -> str:
    return re.sub(r"<[^>]+>", "", page.read_text())


def test_reference_lists_every_setting_with_its_default(site: Path) -> None:
    page = _text(site / "reference" / "settings" / "index.html")
    for f in dataclasses.fields(Settings):
        if f.name != "tier_limits":
            assert f"BRIDGE_{f.name.upper()}" in page, f.name
    assert "BRIDGE_LIMIT_FREE" in page and "100/minute;1000/hour;10000/day" in page
    assert re.search(r"BRIDGE_KEEP_ALIVE\s*300", page)


def test_reference_lists_every_route_of_the_openapi_document(site: Path) -> None:
    from local_api import create_app, shutdown
    from local_api.openapi import build

    app = create_app({"home": site.parent / "home", "prepare_model": False})
    try:
        document = build(app)
    finally:
        shutdown(app)
    page = _text(site / "reference" / "http-api" / "index.html")
    for path in document["paths"]:
        assert path in page, path


def test_reference_holds_the_cli_help(site: Path) -> None:
    page = _text(site / "reference" / "cli" / "index.html")
    for command in ("bridge serve", "bridge chat", "bridge models pull", "bridge connect"):
        assert command in page
    assert "--password-stdin" in page


def test_no_undefined_names_or_dead_references_in_the_docs() -> None:
    """FT/AQ and the teams' names are defined once (explanation/names.md), used nowhere else."""
    pages = [ROOT / "README.md", ROOT / "js" / "README.md", *DOCS.rglob("*.md")]
    for page in pages:
        text = page.read_text()
        assert "shared/spec" not in text, page
        if page.name != "names.md":
            assert not re.search(r"\b(FT|AQ)\b|Free Thinkers|Alpha-Q", text), page
    assert (ROOT / "LICENSE").read_text().lstrip().startswith("Apache License")


def test_readme_is_a_three_minute_read() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.encode()) <= 12 * 1024
    assert "make run" in readme and "make test" in readme


IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)|<img [^>]*src=\"([^\"]+)\"")


def test_readme_images_resolve_to_small_files_in_the_docs() -> None:
    """Each image the README shows is a file of this clone (under docs/, so the site has it
    too), small enough for a README (the widget screenshot is from the browser tests)."""
    images = [a or b for a, b in IMAGE.findall((ROOT / "README.md").read_text())]
    assert "docs/assets/chat-widget.png" in images, images
    for image in images:
        path = (ROOT / image).resolve()
        assert path.is_file() and path.is_relative_to(DOCS), image
        if path.suffix == ".png":  # a real image, not a Git LFS pointer
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", image
        assert path.stat().st_size < 150_000, (image, path.stat().st_size)
    page = (DOCS / "guides" / "widgets.md").read_text()
    assert "](../assets/chat-widget.png)" in page


@pytest.mark.model
def test_quickstart_runs_as_written(tmp_path: Path, model_store: Any) -> None:
    """Every bash and Python block of the quickstart, in order, against `bridge serve`."""
    blocks = [(lang, code) for skip, lang, code in
              BLOCK.findall((DOCS / "getting-started" / "quickstart.md").read_text()) if not skip]
    assert [lang for lang, _ in blocks] == ["bash", "bash", "python"]
    home = tmp_path / "home"
    env = {**os.environ, "BRIDGE_HOME": str(home), "BRIDGE_MODELS_HOME": str(model_store.root),
           "BRIDGE_KEEP_ALIVE": "300", "XDG_CONFIG_HOME": str(tmp_path / "config"),
           "PYTHONPATH": str(ROOT)}
    for name in ("BRIDGE_URL", "BRIDGE_API_KEY"):
        env.pop(name, None)
    # `export PATH="$PWD/.venv/bin:$PATH"`: the venv running these tests
    venv = tmp_path / "checkout"
    (venv / ".venv").mkdir(parents=True)
    (venv / ".venv" / "bin").symlink_to(Path(sys.executable).parent)
    with serve(home, "--server", "werkzeug", env=env) as (_process, url):
        for lang, code in blocks:
            code = code.replace("http://127.0.0.1:5000", url)
            if lang == "bash":
                command = ["bash", "-euo", "pipefail", "-c", code]
            else:
                command = [sys.executable, "-c", code]
            # BRIDGE_URL names the live service (its port is free, not 5000); the key is
            # the one `bridge login` stored: no BRIDGE_API_KEY
            result = subprocess.run(command, cwd=venv, env={**env, "BRIDGE_URL": url},
                                    capture_output=True, text=True, timeout=300)
            assert result.returncode == 0, (code, result.stdout, result.stderr)
            assert result.stdout.strip(), (code, result.stderr)
            if "chat/completion" in code:
                assert '"completion"' in result.stdout and '"backend": "local"' in \
                    result.stdout.replace('":"', '": "')
            if lang == "python":
                assert result.stdout.strip().endswith("local"), result.stdout
