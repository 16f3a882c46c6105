"""The SDK's resources, one small class per part of the API (``client.models``, ...)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from bridge.errors import BridgeError, Conflict, DownloadFailed, Unauthorized
from bridge.sdk.requester import Requester
from bridge.sdk.types import (
    ApiKey,
    Backup,
    ConnectResult,
    Conversation,
    DownloadJob,
    LoadResult,
    Model,
    Record,
    Session,
    SystemStatus,
)

V1 = "/api/v1"
DOWNLOAD_DONE = ("completed", "ready", "failed", "cancelled", "error")
CONNECT_TIMEOUT = 600.0  # the longest launch the service allows (Colab: runtime, papermill, worker)


def parameters_of(parameters: dict[str, Any] | None, given: dict[str, Any]) -> dict[str, Any]:
    """``parameters={...}`` merged with keyword shortcuts (``temperature=0``); None dropped."""
    known = {"temperature", "top_p", "top_k", "max_tokens", "stop", "seed"}
    unknown = sorted(set(given) - known)
    if unknown:
        hint = "; the model is named by model_id=" if "model" in unknown else ""
        raise TypeError(f"unknown parameter(s) {', '.join(unknown)}; known: {sorted(known)}{hint}")
    merged = {**(parameters or {}), **given}
    return {k: v for k, v in merged.items() if v is not None}


def compact(**fields: Any) -> dict[str, Any]:
    """A request body without the fields left as None."""
    return {k: v for k, v in fields.items() if v is not None}


def _id(value: str) -> str:
    return quote(str(value), safe="")


class _Resource:
    def __init__(self, client: Requester) -> None:
        self._client = client

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._client.request(method, V1 + path, **kwargs)


class Auth(_Resource):
    """Accounts and sessions: register, login, refresh, logout, session, API keys."""

    def register(self, username: str, email: str, password: str) -> Record:
        return Record(self._call("POST", "/auth/register", auth=False,
                                 json={"username": username, "email": email,
                                       "password": password}))

    def login(self, username: str, password: str) -> Record:
        """Log in; the client then sends (and renews) these tokens."""
        return Record(self._client._login(username, password))

    def login_or_register(self, username: str, password: str,
                          email: str | None = None) -> Record:
        """Log in; an unknown account is registered first when ``email`` is given."""
        try:
            return self.login(username, password)
        except Unauthorized as refused:
            if not email:
                raise
            try:
                self.register(username, email, password)
            except Conflict:  # the account exists: the password was wrong
                raise refused from None
            return self.login(username, password)

    def refresh(self) -> Record:
        """Rotate the token pair now (the client also does it by itself after a 401)."""
        if not self._client.refresh_token:
            raise BridgeError("this client holds no refresh token; log in first")
        answer = self._call("POST", "/auth/refresh", auth=False,
                            json={"refresh_token": self._client.refresh_token})
        self._client._store(answer)
        return Record(answer)

    def logout(self) -> Record:
        """Revoke this client's tokens on the service and forget them here."""
        answer = self._call("POST", "/auth/logout",
                            json=compact(refresh_token=self._client.refresh_token))
        self._client._forget()
        return Record(answer)

    def session(self) -> Session:
        return Session(self._call("GET", "/auth/session"))

    def create_api_key(self, name: str = "sdk") -> ApiKey:
        """A new API key; ``.key`` (the secret) is in this answer only."""
        return ApiKey(self._call("POST", "/auth/api-keys", json={"name": name}))

    def list_api_keys(self) -> list[ApiKey]:
        return [ApiKey(k) for k in self._call("GET", "/auth/api-keys")["api_keys"]]

    def revoke_api_key(self, key_id: str) -> Record:
        return Record(self._call("DELETE", f"/auth/api-keys/{_id(key_id)}"))


class User(_Resource):
    """FT's profile and preferences."""

    def profile(self) -> Record:
        return Record(self._call("GET", "/user/profile")["user"])

    def update_preferences(self, **preferences: Any) -> Record:
        """``theme=``, ``default_model=``, ``other_preferences=``."""
        return Record(self._call("PUT", "/user/preferences", json={"preferences": preferences}))


class Models(_Resource):
    """The catalog, downloads, load and unload."""

    def list(self) -> list[Model]:
        return [Model(m) for m in self._call("GET", "/models")["models"]]

    def status(self, model_id: str) -> DownloadJob:
        """FT's download status: ``status``, ``progress`` (0-1), ``eta``, ``speed``."""
        return DownloadJob({"model_id": model_id,
                            **self._call("GET", f"/models/{_id(model_id)}/status")})

    def download(
        self,
        model_id: str,
        *,
        wait: bool = True,
        progress: Callable[[DownloadJob], None] | None = None,
        poll_interval: float = 0.5,
        timeout: float | None = None,
        **source: Any,
    ) -> DownloadJob:
        """Start a download (``source=``, ``repo_id=``, ``url=``, ``path=``, ``sha256=``...).

        With ``wait`` (the default) it blocks until the job ends, calling ``progress(job)``
        at every poll, and raises ``DownloadFailed`` (``details["error_type"]``) if it fails.
        """
        body = compact(model_id=model_id, **source)
        job = DownloadJob({"model_id": model_id, **self._call("POST", "/models/download",
                                                              json=body)})
        if progress is not None:
            progress(job)
        if not wait:
            return job
        deadline = None if timeout is None else time.monotonic() + timeout
        while job.get("status") not in DOWNLOAD_DONE:
            if deadline is not None and time.monotonic() > deadline:
                raise DownloadFailed(f"{model_id}: still {job.get('status')} after {timeout} s",
                                     details={"model_id": model_id, "error_type": "TIMEOUT"})
            time.sleep(poll_interval)
            job = self.status(model_id)
            if progress is not None:
                progress(job)
        if job.get("status") in ("failed", "error"):
            err = job.get("error") or {}
            raise DownloadFailed(
                str(err.get("message") or job.get("message") or f"download of {model_id} failed"),
                details={"model_id": model_id,
                         "error_type": err.get("error_type") or job.get("error_type")},
            )
        return job

    def cancel(self, model_id: str) -> DownloadJob:
        return DownloadJob(self._call("DELETE", f"/models/{_id(model_id)}/download"))

    def load(self, model_id: str, *, device: str | None = None,
             quantization: str | None = None, num_ctx: int | None = None) -> LoadResult:
        """Load a model into memory; ``num_ctx``: tokens of context per request (Ollama's
        name; capped by the model's training context; default BRIDGE_CONTEXT_LENGTH)."""
        params = {k: v for k, v in (("device", device), ("quantization", quantization),
                                    ("num_ctx", num_ctx)) if v}
        return LoadResult(self._call("POST", "/models/load",
                                     json=compact(model_id=model_id, parameters=params or None)))

    def unload(self, model_id: str) -> Record:
        return Record(self._call("POST", "/models/unload", json={"model_id": model_id}))

    def delete(self, model_id: str) -> Record:
        """Remove a stored model from disk."""
        return Record(self._call("DELETE", f"/models/{_id(model_id)}"))


class Conversations(_Resource):
    def list(self, *, limit: int | None = None, offset: int | None = None) -> list[Conversation]:
        answer = self._call("GET", "/conversations", params={"limit": limit, "offset": offset})
        return [Conversation(c) for c in answer["conversations"]]

    def get(self, conversation_id: str) -> Conversation:
        return Conversation(self._call("GET", f"/conversations/{_id(conversation_id)}")
                            ["conversation"])

    def delete(self, conversation_id: str) -> Record:
        return Record(self._call("DELETE", f"/conversations/{_id(conversation_id)}"))


class System(_Resource):
    def status(self) -> SystemStatus:
        """CPU, memory, GPU (``.resources``), models loaded/cached, backends."""
        return SystemStatus(self._call("GET", "/system/status"))

    def health(self) -> Record:
        return Record(self._client.request("GET", "/healthz", auth=False))


class Colab(_Resource):
    """Attach remote compute (admin): Colab, any Jupyter runtime, or a running worker."""

    def connect(self, **body: Any) -> ConnectResult:
        """Attach compute; the answer's ``status`` may be ``authorization_required``.

        One of ``credentials={"client_id", "client_secret"}`` (Colab), ``runtime_url=`` and
        ``token=`` (a Jupyter server), ``worker_url=`` and ``worker_secret=`` (a worker);
        plus ``model_id``, ``quantization``, ``tunnel``, ``ngrok_token``, ``name``,
        ``timeout`` (seconds the launch may take). Consent needed: open ``auth_url``.
        """
        body = compact(**body)
        wait = float(body.get("timeout") or CONNECT_TIMEOUT) + 60.0
        return ConnectResult(self._call("POST", "/system/colab/connect", json=body,
                                        timeout=wait))

    def disconnect(self, name: str | None = None) -> Record:
        return Record(self._call("DELETE", "/system/colab/connect",
                                 params={"name": name}))


class Database(_Resource):
    """AQ's backups (admin)."""

    def backup(self) -> Backup:
        return Backup(self._call("POST", "/db/backup"))

    def list(self) -> list[Backup]:
        return [Backup(b) for b in self._call("GET", "/db/backup")["backups"]]

    def restore(self, backup_id: str) -> Backup:
        return Backup(self._call("POST", f"/db/restore/{_id(backup_id)}"))


class Admin(_Resource):
    """Users and the audit log (admin)."""

    def users(self) -> list[Record]:
        return [Record(u) for u in self._call("GET", "/admin/users")["users"]]

    def update_user(self, user_id: int, **fields: Any) -> Record:
        """``role=``, ``tier=``, ``rate_limit=``, ``disabled=``."""
        return Record(self._call("PATCH", f"/admin/users/{int(user_id)}", json=fields)["user"])

    def audit(self, **filters: Any) -> list[Record]:
        """``event=``, ``user_id=``, ``limit=``, ``offset=``."""
        answer = self._call("GET", "/audit", params=filters)
        return [Record(e) for e in answer["events"]]
