"""Anthropic's error shape for /v1/messages: ``{"type": "error", "error": {"type", "message"},
"request_id"}`` with the HTTP status.

Error types by status from Anthropic's API reference ("Errors"): 400 invalid_request_error,
401 authentication_error, 403 permission_error, 404 not_found_error, 413
request_too_large, 429 rate_limit_error, 500 api_error, 529 overloaded_error (a backend
that is down here: 503, the same type). A stream that fails after its first byte ends with
one ``event: error`` carrying the same object.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint
from werkzeug.exceptions import HTTPException

from bridge import errors
from local_api.errors import register_dialect, request_id
from local_api.openai import errors as openai_errors

log = logging.getLogger("compute_bridge.anthropic")

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
}


def error_type(status: int) -> str:
    """Anthropic's error ``type`` for an HTTP status."""
    return _TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def error_body(exc: errors.BridgeError) -> dict[str, Any]:
    """``{"type": "error", "error": {"type", "message"}, "request_id"}``."""
    message = exc.message
    if isinstance(exc, errors.ModelNotFound):
        model = exc.details.get("model_id") or exc.details.get("model")
        message = f"model: {model}" if model else message
    return {"type": "error", "error": {"type": error_type(exc.status), "message": message},
            "request_id": request_id()}  # fmt: skip


def from_http(exc: HTTPException) -> errors.BridgeError:
    """werkzeug's and Flask-Limiter's errors (OpenAI's translation: the same statuses)."""
    return openai_errors.from_http(exc)


def register(bp: Blueprint) -> None:
    """Answer every failure under ``bp`` in Anthropic's shape."""
    register_dialect(
        bp, body=error_body, from_http=from_http, logger=log,
        internal=lambda: errors.BridgeError(f"Internal server error (request id {request_id()})"),
    )
