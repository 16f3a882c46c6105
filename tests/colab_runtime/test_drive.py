"""Notebook upload to the Drive stand-in with google-api-python-client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.oauth2.credentials import Credentials

from bridge.errors import BackendUnavailable, Forbidden, Unauthorized, ValidationError
from colab_runtime.drive import upload_notebook
from tests.support.fake_google import (
    DriveState,
    LoopbackServer,
    OAuthState,
    create_drive_app,
    create_oauth_app,
)

NOTEBOOK = Path(__file__).resolve().parents[1] / "data" / "worker_probe.ipynb"


@pytest.fixture
def drive() -> Iterator[tuple[DriveState, str]]:
    state = DriveState()
    state.tokens.access.add("ya29.live")
    with LoopbackServer(create_drive_app(state)) as server:
        yield state, server.url


def test_upload_returns_file_id_and_colab_link(drive) -> None:
    state, url = drive
    result = upload_notebook(
        Credentials("ya29.live"),
        NOTEBOOK,
        name="bridge worker.ipynb",
        folder_id="folder-1",
        root_url=url,
    )
    stored = state.files[result.file_id]
    assert result.colab_url == f"https://colab.research.google.com/drive/{result.file_id}"
    assert result.name == "bridge worker.ipynb"
    assert stored["metadata"] == {
        "name": "bridge worker.ipynb",
        "mimeType": "application/vnd.google.colaboratory",
        "parents": ["folder-1"],
    }
    assert stored["media_type"] == "application/x-ipynb+json"
    assert json.loads(stored["content"]) == json.loads(NOTEBOOK.read_text())


def test_stale_token_is_refreshed_through_the_token_endpoint(drive) -> None:
    state, url = drive
    oauth_state = OAuthState(tokens=state.tokens)
    oauth_state.refresh_tokens.add("1//refresh")
    with LoopbackServer(create_oauth_app(oauth_state)) as google:
        creds = Credentials(
            "ya29.stale",
            refresh_token="1//refresh",
            token_uri=google.url + "/token",
            client_id=oauth_state.client_id,
            client_secret=oauth_state.client_secret,
        )
        result = upload_notebook(creds, NOTEBOOK, root_url=url)
    assert result.file_id in state.files and creds.token != "ya29.stale"


def test_refused_token_without_refresh_is_unauthorized(drive) -> None:
    _, url = drive
    with pytest.raises(Unauthorized, match="expired or was revoked"):
        upload_notebook(Credentials("ya29.stale"), NOTEBOOK, root_url=url)


@pytest.mark.parametrize(("status", "error"), [(403, Forbidden), (500, BackendUnavailable)])
def test_drive_failures_map_to_bridge_errors(drive, status, error) -> None:
    state, url = drive
    state.fail_next.append(status)
    with pytest.raises(error, match=str(status) if status >= 500 else "drive.file"):
        upload_notebook(Credentials("ya29.live"), NOTEBOOK, root_url=url)


def test_unreachable_drive_and_bad_paths(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailable, match="cannot reach"):
        upload_notebook(Credentials("t"), NOTEBOOK, root_url="http://127.0.0.1:9/", timeout=5)
    with pytest.raises(ValidationError):
        upload_notebook(Credentials("t"), tmp_path / "missing.ipynb")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValidationError):
        upload_notebook(Credentials("t"), tmp_path / "notes.txt")
