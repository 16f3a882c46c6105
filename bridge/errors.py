"""One error hierarchy for the service, the SDK and the worker.

    BridgeError                      500 INTERNAL_ERROR
    ├── ValidationError              400 VALIDATION_ERROR
    ├── Unauthorized                 401 UNAUTHORIZED
    ├── Forbidden                    403 FORBIDDEN
    ├── NotFound                     404 NOT_FOUND
    │   └── ModelNotFound            404 MODEL_NOT_FOUND
    ├── MethodNotAllowed             405 METHOD_NOT_ALLOWED
    ├── Conflict                     409 CONFLICT
    ├── PayloadTooLarge              413 PAYLOAD_TOO_LARGE
    ├── UnsupportedMediaType         415 UNSUPPORTED_MEDIA_TYPE (a body not declared JSON)
    ├── InvalidModel                 422 INVALID_MODEL (a model file its engine cannot load)
    ├── RateLimitExceeded            429 RATE_LIMIT_EXCEEDED
    ├── NotSupported                 501 NOT_SUPPORTED
    ├── DownloadFailed               502 DOWNLOAD_FAILED
    ├── BackendUnavailable           503 BACKEND_UNAVAILABLE
    └── ServiceUnreachable           503 SERVICE_UNREACHABLE (client side only)

Each class carries its HTTP ``status`` and envelope ``code``; ``error_for_code``
maps a code back to its class so clients raise the same types the server did.
"""

from __future__ import annotations

from typing import Any


class BridgeError(Exception):
    """Root of every error this project raises on purpose."""

    status: int = 500
    code: str = "INTERNAL_ERROR"
    default_message: str = "Internal server error"

    def __init__(
        self,
        message: str | None = None,
        *,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.details: dict[str, Any] = dict(details or {})
        self.headers: dict[str, str] = dict(headers or {})
        super().__init__(self.message)

    def to_dict(self, request_id: str | None = None) -> dict[str, Any]:
        """The error envelope of API.md."""
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        if request_id:
            body["request_id"] = request_id
        return {"error": body}


class ValidationError(BridgeError):
    status, code, default_message = 400, "VALIDATION_ERROR", "Invalid request"


class ContextLengthExceeded(ValidationError):
    """The prompt plus ``max_tokens`` does not fit the model's context (OpenAI's
    ``context_length_exceeded``); details carry ``prompt_tokens``, ``max_tokens``, ``context``."""

    code, default_message = "CONTEXT_LENGTH_EXCEEDED", "The prompt does not fit the context"


class ModelTypeMismatch(ValidationError):
    """An embedding model asked to generate text, or a generation-only model asked to embed
    (Ollama answers both with a 400 as well: "... does not support embeddings")."""

    code, default_message = "MODEL_TYPE_MISMATCH", "The model does not serve this request"


class Unauthorized(BridgeError):
    status, code, default_message = 401, "UNAUTHORIZED", "Invalid or expired token"


class Forbidden(BridgeError):
    status, code, default_message = 403, "FORBIDDEN", "Insufficient permissions"


class NotFound(BridgeError):
    status, code, default_message = 404, "NOT_FOUND", "Resource not found"


class ModelNotFound(NotFound):
    code, default_message = "MODEL_NOT_FOUND", "Model not found"


class MethodNotAllowed(BridgeError):
    status, code, default_message = 405, "METHOD_NOT_ALLOWED", "Method not allowed"


class Conflict(BridgeError):
    status, code, default_message = 409, "CONFLICT", "Conflict"


class PayloadTooLarge(BridgeError):
    status, code, default_message = 413, "PAYLOAD_TOO_LARGE", "Request body too large"


class UnsupportedMediaType(BridgeError):
    status, code, default_message = 415, "UNSUPPORTED_MEDIA_TYPE", "Send the body as JSON"


class InvalidModel(BridgeError):
    status, code, default_message = 422, "INVALID_MODEL", "The model file cannot be loaded"


class RateLimitExceeded(BridgeError):
    status, code, default_message = 429, "RATE_LIMIT_EXCEEDED", "Rate limit exceeded"

    @property
    def retry_after(self) -> int | None:
        value = self.headers.get("Retry-After") or self.details.get("retry_after")
        return int(value) if value is not None else None


class NotSupported(BridgeError):
    status, code, default_message = 501, "NOT_SUPPORTED", "Not supported"


class DownloadFailed(BridgeError):
    status, code, default_message = 502, "DOWNLOAD_FAILED", "Failed to download model"


class BackendUnavailable(BridgeError):
    status, code, default_message = 503, "BACKEND_UNAVAILABLE", "No backend can answer"


class ServiceUnreachable(BridgeError):
    status, code, default_message = 503, "SERVICE_UNREACHABLE", "Cannot reach the service"


# Colab's own refusals (colab-protocol.md), each with the code a client acts on.
class ColabTooManyAssignments(BridgeError):
    status, code, default_message = 409, "COLAB_TOO_MANY_ASSIGNMENTS", "Too many Colab runtimes"


class ColabAcceleratorUnavailable(BridgeError):
    status, code, default_message = 503, "COLAB_ACCELERATOR_UNAVAILABLE", "No such GPU free now"


class ColabNotEntitled(BridgeError):
    status, code, default_message = 403, "COLAB_NOT_ENTITLED", "Not entitled to this accelerator"


class ColabQuotaExceeded(BridgeError):
    status, code, default_message = 429, "COLAB_QUOTA_EXCEEDED", "Colab usage quota exceeded"


class ColabDenied(BridgeError):
    status, code, default_message = 403, "COLAB_DENIED", "Colab refuses this account"


def _all_subclasses(cls: type[BridgeError]) -> list[type[BridgeError]]:
    found: list[type[BridgeError]] = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_all_subclasses(sub))
    return found


def error_for_code(code: str, status: int = 500) -> type[BridgeError]:
    """The class for an envelope ``code`` (falls back on the HTTP status)."""
    classes: list[type[BridgeError]] = [BridgeError, *_all_subclasses(BridgeError)]
    for cls in classes:
        if cls.code == code:
            return cls
    for cls in classes:  # an unknown code: the most general class of its status
        parent = cls.__mro__[1]
        if cls.status == status and not (issubclass(parent, BridgeError) and
                                          parent.status == status):
            return cls
    return BridgeError
