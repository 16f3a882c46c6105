"""Ollama's error shape for /ollama/api: ``{"error": "message"}`` with the HTTP status.

Read from Ollama's server (server/routes.go, gin handlers) and its Python client
(``ollama._types.ResponseError`` reads ``error`` from the body): an unknown model is a 404
``model 'x' not found``, a bad body a 400, anything else the status of the failure. A
stream that fails after its first byte ends with one more line ``{"error": "..."}``.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response
from werkzeug.exceptions import HTTPException

from bridge import errors
from local_api.errors import register_dialect, request_id
from local_api.ollama import hf

log = logging.getLogger("compute_bridge.ollama")


def message(exc: errors.BridgeError) -> str:
    """The text Ollama would put in ``error`` for ``exc``."""
    if isinstance(exc, errors.ModelNotFound):
        model = exc.details.get("model_id") or exc.details.get("model")
        if model:
            return f"model '{hf.ollama_name(str(model))}' not found"
    if isinstance(exc, errors.ContextLengthExceeded) and "max_tokens" not in exc.details:
        return exc.message  # an embedding's input: no num_predict to name
    if isinstance(exc, errors.ContextLengthExceeded) and "context" in exc.details:
        d = exc.details  # in this dialect's words: num_predict, truncate
        return (f"the input length exceeds the context length: the prompt takes "
                f"{d.get('prompt_tokens')} tokens and num_predict asks for {d.get('max_tokens')} "
                f"more, the context is {d['context']}; shorten the prompt, lower num_predict, "
                'or send "truncate": true')
    if type(exc) is errors.BridgeError and exc.status == 500:
        return f"{exc.message} (request id {request_id()})"
    return exc.message


def error_body(exc: errors.BridgeError) -> dict[str, Any]:
    return {"error": message(exc)}


def from_http(exc: HTTPException) -> errors.BridgeError:
    """werkzeug's and Flask-Limiter's errors, in this dialect's words."""
    status = exc.code or 500
    ready = getattr(exc, "response", None)
    if status == 429:  # Flask-Limiter's breach, answered in the /api envelope by limits.py
        retry = ready.headers.get("Retry-After") if isinstance(ready, Response) else None
        text = "rate limit exceeded" + (f"; try again in {retry}s" if retry else "")
        return errors.RateLimitExceeded(text, headers={"Retry-After": retry} if retry else None)
    if status == 400:
        return errors.ValidationError("invalid request body")
    if status == 413:
        return errors.PayloadTooLarge()
    error = errors.BridgeError(exc.description or exc.name)
    error.status = status
    allowed = sorted(getattr(exc, "valid_methods", None) or [])
    if allowed:
        error.headers["Allow"] = ", ".join(allowed)
    return error


def register(bp: Blueprint) -> None:
    """Answer every failure under ``bp`` in Ollama's shape (the app's envelope stays elsewhere)."""
    register_dialect(bp, body=error_body, from_http=from_http, logger=log,
                     internal=lambda: errors.BridgeError("internal server error"))
