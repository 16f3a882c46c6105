"""The landing page at / and the docs at /docs/: somewhere to land on a fresh clone."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask.testing import FlaskClient

from local_api.system import landing


def test_root_is_a_page_linking_docs_status_and_api_reference(client: FlaskClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    for link in ('href="/docs/"', 'href="/api/v1/system/status"', 'href="/api/v1/openapi.json"'):
        assert link in page


def test_docs_show_the_markdown_sources_before_the_site_is_built(
    client: FlaskClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(landing, "SITE_DIR", tmp_path / "no-site")
    index = client.get("/docs/").get_data(as_text=True)
    assert 'href="/docs/getting-started/quickstart.md"' in index
    page = client.get("/docs/getting-started/quickstart.md")
    assert page.status_code == 200
    assert "<h1>Quickstart</h1>" in page.get_data(as_text=True)
    assert client.get("/docs/../pyproject.toml").status_code == 404
    assert client.get("/docs/missing.md").status_code == 404


def test_docs_serve_the_built_site_with_its_own_policy(
    client: FlaskClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    (site / "guides").mkdir(parents=True)
    (site / "index.html").write_text("<h1>built home</h1>")
    (site / "guides" / "index.html").write_text("<h1>built guides</h1>")
    monkeypatch.setattr(landing, "SITE_DIR", site)
    with client.get("/docs/") as home:
        assert "built home" in home.get_data(as_text=True)
    with client.get("/docs/guides/") as guides:
        assert "built guides" in guides.get_data(as_text=True)
        assert "default-src 'self'" in guides.headers["Content-Security-Policy"]
    assert "(the source pages" not in client.get("/").get_data(as_text=True)
