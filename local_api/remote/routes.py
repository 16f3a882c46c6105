"""Attach remote compute: POST/DELETE /system/colab/connect and the Google OAuth callback."""

from __future__ import annotations

from typing import Any

import httpx
from flask import Blueprint, Flask, request
from flask.blueprints import BlueprintSetupState

from bridge.errors import BridgeError, Forbidden, NotFound, ValidationError
from bridge.models.store import QUANTIZATIONS
from bridge.urls import USERINFO_HINT, redact_url, url_error, userinfo_misplaced
from colab_runtime.colab_answers import VARIANTS
from local_api.accounts import audit
from local_api.accounts.identity import admin_required, current_identity
from local_api.docs import spec
from local_api.remote import attach, google_account
from local_api.remote import workers as remote_module
from local_api.remote.workers import remote
from local_api.validation import json_body, obj

bp = Blueprint("connect", __name__, url_prefix="/system/colab")

_text = {"type": "string", "minLength": 1, "maxLength": 2048}
_url = {"type": "string", "pattern": "^https?://[^\\s]+$", "maxLength": 2048}
_name = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"}
CONNECT = obj({
    "credentials": obj({"client_id": _text, "client_secret": _text},
                       ("client_id", "client_secret")),
    "accelerator": {"type": "string", "enum": sorted(set().union(*VARIANTS.values()))},
    "manual": {"type": "boolean"},
    "redirect_uri": _url,
    "runtime_url": _url,
    "token": _text,
    "headers": {"type": "object", "additionalProperties": _text, "maxProperties": 32},
    "worker_url": _url,
    "worker_secret": {"type": "string", "minLength": 16, "maxLength": 512},
    "openai_base_url": _url,
    "base_url": _url,
    "api_key": _text,
    "model_id": {"type": "string", "minLength": 1, "maxLength": 128},
    "quantization": {"type": "string", "enum": list(QUANTIZATIONS)},
    "tunnel": {"type": "string", "enum": ["ngrok", "none"]},
    "ngrok_token": _text,
    "port": {"type": "integer", "minimum": 0, "maximum": 65535},
    # seconds the connect may take: each notebook step of a launch, a worker's model load
    "timeout": {"type": "number", "minimum": 1, "maximum": 600},
    # seconds an attached worker may stay silent (between two tokens) before failover
    "read_timeout": {"type": "number", "minimum": 1, "maximum": 600},
    # pip requirement, wheel or Git URL the launched notebook installs this project from
    "package_spec": {"type": "string", "minLength": 1, "maxLength": 1024},
    "name": _name,
})  # fmt: skip
DETACH = obj({"name": _name})


@bp.record_once
def _on_register(state: BlueprintSetupState) -> None:
    assert isinstance(state.app, Flask)  # Flask types the setup state's app as its sans-IO base
    remote_module.init_app(state.app)


def _check_urls(body: dict[str, Any]) -> None:
    """A URL the pattern lets through but httpx cannot parse (bad IDNA, no host) is a 400;
    so is a query or fragment on a base URL (paths are appended to it)."""
    for field in ("redirect_uri", "runtime_url", "worker_url", "openai_base_url", "base_url"):
        if field in body:
            if userinfo_misplaced(body[field]):
                raise ValidationError(f"{field} is not a valid URL: {USERINFO_HINT}",
                                      details={"field": field})
            try:
                url = httpx.URL(body[field])
                if not url.host:
                    raise httpx.InvalidURL("no host")
            except httpx.InvalidURL as exc:
                message = url_error(body[field], exc)
                raise ValidationError(f"{field} is not a valid URL: {message}"[:300],
                                      details={"field": field}) from exc
            if field != "redirect_uri" and ("?" in body[field] or "#" in body[field]):
                raise ValidationError(f"{field} must not carry a query or fragment (?...#...): "
                                      "give the base URL, credentials as user:password@host",
                                      details={"field": field})


@bp.post("/connect")
@spec("Attach remote compute: Colab, a Jupyter runtime, a worker or an OpenAI server (admin)",
      auth="admin", body=CONNECT)
@admin_required
def connect() -> Any:
    body = json_body(CONNECT)
    _check_urls(body)
    mode = next((m for m in (*attach.MODES, "base_url") if m in body), None)
    where = body.get("worker_url") or body.get("runtime_url") or body.get("openai_base_url") \
        or body.get("base_url")
    facts: dict[str, Any] = {"mode": mode, "url": redact_url(where) if where else None,
                             "name": body.get("name")}
    try:
        answer = attach.connect(body, _who())
    except BridgeError as exc:
        audit.record("remote_connect", "failure", **facts, error=exc.code)
        raise
    audit.record("remote_connect", "success" if answer["status"] == "connected" else "pending",
                 **facts, status=answer["status"], worker=answer.get("worker"))
    return answer


@bp.delete("/connect")
@spec("Detach a remote worker; stops a launched worker, releases its Colab runtime (admin)",
      auth="admin", body=DETACH, query=("name",))
@admin_required
def disconnect() -> Any:
    body = json_body(DETACH, optional=True)
    name = body.get("name") or request.args.get("name")
    if not name:
        names = remote().names(stored=True)
        if not names:
            raise NotFound("no remote worker is attached")
        if len(names) > 1:
            raise ValidationError(f"several workers are attached ({', '.join(names)}); name one",
                                  details={"field": "name", "workers": names})
        name = names[0]
    answer = remote().detach(name)
    audit.record("remote_disconnect", worker=name, released=answer["released"],
                 stopped=answer["stopped"])
    return answer


@bp.get("/callback")
@spec("Google OAuth redirect target: stores the sign-in for the next connect", auth="none",
      query=("code", "state", "error"))
def callback() -> Any:
    if request.args.get("error"):
        raise Forbidden(f"Google sign-in was not granted: {request.args['error'][:100]}")
    code = request.args.get("code", "")
    if not code:
        raise ValidationError("the OAuth callback lacks its code", details={"field": "code"})
    try:
        user_id = google_account.finish_sign_in(request.args.get("state", ""), code)
    except BridgeError as exc:
        audit.record("google_sign_in", "failure", error=exc.code)
        raise
    audit.record("google_sign_in", user_id=user_id)
    return {"status": "authorized",
            "message": "Google sign-in stored. Send the connect request again to start the worker."}


def _who() -> Any:
    who = current_identity()
    assert who is not None  # admin_required ran
    return who
