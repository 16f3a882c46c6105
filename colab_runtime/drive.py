"""Uploads to the user's Drive (drive.file scope): the worker notebook, database backups."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httplib2
from google.auth.credentials import Credentials
from google.auth.exceptions import GoogleAuthError, RefreshError
from google_auth_httplib2 import AuthorizedHttp
from googleapiclient.discovery import build_from_document
from googleapiclient.discovery_cache import get_static_doc
from googleapiclient.errors import HttpError
from googleapiclient.http import MediaFileUpload

from bridge.errors import (
    BackendUnavailable,
    BridgeError,
    Forbidden,
    NotFound,
    Unauthorized,
    ValidationError,
)

DRIVE_ROOT_URL = "https://www.googleapis.com/"
COLAB_OPEN_URL = "https://colab.research.google.com/drive/"
# Drive shows files of this type as Colab notebooks ("Open with Colaboratory").
COLAB_MIME_TYPE = "application/vnd.google.colaboratory"
IPYNB_MIME_TYPE = "application/x-ipynb+json"


@dataclass(frozen=True)
class DriveUpload:
    """An uploaded notebook: its Drive file id and the link that opens it in Colab."""

    file_id: str
    name: str
    colab_url: str


def colab_url(file_id: str) -> str:
    """The "open in Colab" link for a Drive file id."""
    return COLAB_OPEN_URL + file_id


def upload_notebook(
    credentials: Credentials,
    notebook_path: str | Path,
    *,
    name: str | None = None,
    folder_id: str | None = None,
    root_url: str = DRIVE_ROOT_URL,
    timeout: float = 60.0,
) -> DriveUpload:
    """Upload a notebook file to Drive and return its id and Colab link."""
    path = Path(notebook_path)
    if path.suffix != ".ipynb" or not path.is_file():
        raise ValidationError(f"not a notebook file: {path}")
    file_id, shown = upload_file(
        credentials, path, name=name or path.name, drive_type=COLAB_MIME_TYPE,
        media_type=IPYNB_MIME_TYPE, folder_id=folder_id, root_url=root_url, timeout=timeout,
    )  # fmt: skip
    return DriveUpload(file_id, shown, colab_url(file_id))


def upload_file(
    credentials: Credentials,
    path: Path,
    *,
    name: str,
    drive_type: str,
    media_type: str,
    folder_id: str | None = None,
    root_url: str = DRIVE_ROOT_URL,
    timeout: float = 60.0,
) -> tuple[str, str]:
    """Upload one file as ``name``; returns its Drive file id and the name Drive gave it."""
    metadata: dict[str, Any] = {"name": name, "mimeType": drive_type}
    if folder_id:
        metadata["parents"] = [folder_id]
    service = _drive_service(credentials, root_url, timeout)
    media = MediaFileUpload(str(path), mimetype=media_type, resumable=False)
    try:
        request = service.files().create(body=metadata, media_body=media, fields="id,name")
        created = request.execute()
    except HttpError as exc:
        raise _http_error(exc) from exc
    except RefreshError as exc:
        raise Unauthorized(f"Google sign-in expired or was revoked: {exc}") from exc
    except (OSError, httplib2.HttpLib2Error, GoogleAuthError) as exc:
        raise BackendUnavailable(f"cannot reach Google Drive: {exc}") from exc
    file_id = created.get("id") if isinstance(created, dict) else None
    if not file_id:
        raise BackendUnavailable("Google Drive answered an upload without a file id")
    return str(file_id), str(created.get("name") or name)


def _drive_service(credentials: Credentials, root_url: str, timeout: float) -> Any:
    # The bundled discovery document (no network); uploads use its rootUrl, not
    # client_options.api_endpoint, so the root is rewritten here.
    doc = json.loads(get_static_doc("drive", "v3") or "{}")
    if not doc:
        raise BackendUnavailable("google-api-python-client lacks the Drive v3 discovery document")
    root = root_url if root_url.endswith("/") else root_url + "/"
    doc["rootUrl"] = root
    doc["baseUrl"] = root + doc["servicePath"]
    http = AuthorizedHttp(credentials, http=httplib2.Http(timeout=timeout))
    return build_from_document(doc, http=http)


def _http_error(exc: HttpError) -> BridgeError:
    status = exc.resp.status
    reason = exc.reason or "no reason given"
    details = {"upstream_status": status}
    if status == 401:
        return Unauthorized(f"Google Drive refused the credentials: {reason}", details=details)
    if status == 403:
        return Forbidden(f"Google Drive denied the upload (drive.file scope?): {reason}",
                         details=details)
    if status == 404:
        return NotFound(f"Google Drive folder not found: {reason}", details=details)
    return BackendUnavailable(f"Google Drive answered HTTP {status}: {reason}", details=details)
