"""One place turns every failure into the envelope of API.md, and stamps request ids."""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from bridge import errors

log = logging.getLogger("compute_bridge.api")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")

_BY_STATUS: dict[int, type[errors.BridgeError]] = {
    400: errors.ValidationError,
    401: errors.Unauthorized,
    403: errors.Forbidden,
    404: errors.NotFound,
    405: errors.MethodNotAllowed,
    409: errors.Conflict,
    413: errors.PayloadTooLarge,
    429: errors.RateLimitExceeded,
}


def request_id() -> str:
    """The id of the current request (taken from X-Request-ID when it is well formed)."""
    rid = g.get("request_id")
    if rid is None:
        incoming = request.headers.get("X-Request-ID", "")
        rid = incoming if _REQUEST_ID.match(incoming) else secrets.token_hex(8)
        g.request_id = rid
    return rid  # type: ignore[no-any-return]


def error_response(error: errors.BridgeError) -> Response:
    response = jsonify(error.to_dict(request_id()))
    response.status_code = error.status
    for name, value in error.headers.items():
        response.headers[name] = value
    return response


def _from_http(exc: HTTPException) -> errors.BridgeError:
    status = exc.code or 500
    cls = _BY_STATUS.get(status, errors.BridgeError)
    if status == 400:
        return errors.ValidationError("Request body is not valid JSON or is malformed")
    if status == 404:
        return errors.NotFound(f"No such endpoint: {request.path}")
    if status == 405:
        allowed = sorted(getattr(exc, "valid_methods", None) or [])
        return errors.MethodNotAllowed(
            f"{request.method} is not allowed on {request.path}",
            details={"allowed": allowed},
            headers={"Allow": ", ".join(allowed)} if allowed else None,
        )
    if status == 413:
        return errors.PayloadTooLarge()
    if cls is errors.BridgeError:
        error = errors.BridgeError(exc.description or exc.name)
        error.status = status
        return error
    return cls()


def register_dialect(
    bp: Blueprint,
    *,
    body: Callable[[errors.BridgeError], dict[str, Any]],
    from_http: Callable[[HTTPException], errors.BridgeError],
    internal: Callable[[], errors.BridgeError],
    logger: logging.Logger,
) -> None:
    """Answer every failure under ``bp`` in another dialect's error shape (OpenAI's, Ollama's);
    the app's envelope stays everywhere else. ``body`` encodes an error, ``from_http``
    translates werkzeug's and Flask-Limiter's, ``internal`` is what an unexpected exception
    becomes (logged with its request id); each answer keeps the error's headers."""

    def respond(exc: errors.BridgeError) -> Response:
        response = Response(json.dumps(body(exc)), exc.status, mimetype="application/json")
        response.headers.update(exc.headers)
        return response

    @bp.errorhandler(errors.BridgeError)
    def _bridge_error(exc: errors.BridgeError) -> Response:
        if exc.status >= 500:
            logger.warning("request %s failed: %s %s", request_id(), exc.code, exc.message)
        return respond(exc)

    @bp.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        return respond(from_http(exc))

    @bp.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        logger.exception("request %s raised an unexpected error", request_id())
        return respond(internal())


def init_app(app: Flask) -> None:
    @app.before_request
    def _stamp() -> None:
        request_id()

    @app.after_request
    def _echo_id(response: Response) -> Response:
        response.headers["X-Request-ID"] = request_id()
        if response.status_code not in (429, 503):  # Flask-Limiter adds it to every answer
            response.headers.pop("Retry-After", None)
        return response

    @app.errorhandler(errors.BridgeError)
    def _bridge(exc: errors.BridgeError) -> Response:
        if exc.status >= 500:
            log.warning("request %s failed: %s %s", request_id(), exc.code, exc.message)
        return error_response(exc)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        ready = getattr(exc, "response", None)
        if isinstance(ready, Response):  # Flask-Limiter's breach answer, built by limits.py
            return ready
        return error_response(_from_http(exc))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("request %s raised an unexpected error", request_id())
        return error_response(errors.BridgeError())
