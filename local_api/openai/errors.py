"""OpenAI's error shape for /v1: {"error": {message, type, param, code}} with the right status."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response
from werkzeug.exceptions import HTTPException

from bridge import errors
from local_api.errors import register_dialect, request_id

log = logging.getLogger("compute_bridge.openai")


def param_name(field: str | None) -> str | None:
    """JSON-Schema paths (messages.0.role) the way OpenAI names params (messages[0].role)."""
    if not field:
        return None
    out = ""
    for part in field.split("."):
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out


_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    429: "requests",
}
_CODES: dict[type[errors.BridgeError], str | None] = {
    errors.ValidationError: None,
    errors.Unauthorized: "invalid_api_key",
    errors.ModelNotFound: "model_not_found",
    errors.RateLimitExceeded: "rate_limit_exceeded",
}


def error_type(status: int) -> str:
    """OpenAI's error ``type`` for an HTTP status."""
    if status >= 500:
        return "server_error"
    return _TYPES.get(status, "invalid_request_error")


def error_body(exc: errors.BridgeError) -> dict[str, Any]:
    """OpenAI's error object: {"error": {message, type, param, code}}."""
    message, param = exc.message, param_name(exc.details.get("field"))
    if param == "json_schema":  # an engine refused the schema: OpenAI's name for it
        param = "response_format"
    if isinstance(exc, errors.ModelNotFound):
        model = exc.details.get("model_id") or exc.details.get("model")
        message = f"The model `{model}` does not exist" if model else message
        param = "model"
    code = _CODES.get(type(exc), exc.code.lower())
    if exc.status == 500 and type(exc) is errors.BridgeError:
        code = None
    return {
        "error": {"message": message, "type": error_type(exc.status), "param": param, "code": code}
    }


def from_http(exc: HTTPException) -> errors.BridgeError:
    """werkzeug's and Flask-Limiter's errors, in this dialect's words."""
    status = exc.code or 500
    ready = getattr(exc, "response", None)
    if status == 429:  # Flask-Limiter's breach, answered in the /api envelope by limits.py
        details = {}
        if isinstance(ready, Response) and ready.is_json:
            details = (ready.get_json(silent=True) or {}).get("error", {}).get("details", {})
        retry = ready.headers.get("Retry-After") if isinstance(ready, Response) else None
        message = f"Rate limit reached ({details.get('window', exc.description)})"
        if retry:
            message += f"; try again in {retry}s"
        return errors.RateLimitExceeded(message, headers={"Retry-After": retry} if retry else None)
    if status == 400:
        return errors.ValidationError("Request body is not valid JSON or is malformed")
    error = errors.BridgeError(exc.description or exc.name)
    error.status = status
    error.code = exc.name.upper().replace(" ", "_")
    allowed = sorted(getattr(exc, "valid_methods", None) or [])
    if allowed:
        error.headers["Allow"] = ", ".join(allowed)
    return error


def register(bp: Blueprint) -> None:
    """Answer every failure under ``bp`` in OpenAI's shape (the app's envelope stays elsewhere)."""
    register_dialect(
        bp, body=error_body, from_http=from_http, logger=log,
        internal=lambda: errors.BridgeError(f"Internal server error (request id {request_id()})"),
    )
