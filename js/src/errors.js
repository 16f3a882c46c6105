// One error tree, the Python SDK's (bridge/errors.py), chosen by the envelope's `code`.
//
//   BridgeError                      500 INTERNAL_ERROR
//   ├── ValidationError              400 VALIDATION_ERROR
//   │   ├── ContextLengthExceeded    400 CONTEXT_LENGTH_EXCEEDED
//   │   └── ModelTypeMismatch        400 MODEL_TYPE_MISMATCH  (an embedding model asked to chat, ...)
//   ├── Unauthorized                 401 UNAUTHORIZED
//   ├── Forbidden                    403 FORBIDDEN
//   ├── NotFound                     404 NOT_FOUND
//   │   └── ModelNotFound            404 MODEL_NOT_FOUND
//   ├── MethodNotAllowed             405 METHOD_NOT_ALLOWED
//   ├── Conflict                     409 CONFLICT
//   ├── PayloadTooLarge              413 PAYLOAD_TOO_LARGE
//   ├── RateLimitExceeded            429 RATE_LIMIT_EXCEEDED  (.retryAfter, seconds)
//   ├── NotSupported                 501 NOT_SUPPORTED
//   ├── DownloadFailed               502 DOWNLOAD_FAILED
//   ├── BackendUnavailable           503 BACKEND_UNAVAILABLE
//   └── ServiceUnreachable           503 SERVICE_UNREACHABLE  (client side only)

import { toCamel } from "./case.js";

export class BridgeError extends Error {
  static status = 500;
  static code = "INTERNAL_ERROR";
  static defaultMessage = "Internal server error";

  /**
   * @param {string} [message]
   * @param {{details?: object, headers?: object, status?: number, code?: string,
   *          requestId?: string, cause?: unknown}} [options]
   */
  constructor(message, options = {}) {
    const kind = new.target;
    super(message || kind.defaultMessage, options.cause === undefined ? undefined
      : { cause: options.cause });
    this.name = kind.name;
    this.code = options.code || kind.code;
    this.status = options.status ?? kind.status;
    this.details = { ...(options.details || {}) };
    this.headers = { ...(options.headers || {}) };
    this.requestId = options.requestId ?? this.headers["x-request-id"] ?? undefined;
  }

  /** The error envelope of API.md. */
  toJSON() {
    const error = { code: this.code, message: this.message };
    if (Object.keys(this.details).length) error.details = this.details;
    if (this.requestId) error.request_id = this.requestId;
    return { error };
  }
}

export class ValidationError extends BridgeError {
  static status = 400;
  static code = "VALIDATION_ERROR";
  static defaultMessage = "Invalid request";
}

export class ContextLengthExceeded extends ValidationError {
  static code = "CONTEXT_LENGTH_EXCEEDED";
  static defaultMessage = "The prompt does not fit the context";
}

/** An embedding model asked to generate text, or a text model asked to embed. */
export class ModelTypeMismatch extends ValidationError {
  static code = "MODEL_TYPE_MISMATCH";
  static defaultMessage = "The model does not serve this request";
}

export class Unauthorized extends BridgeError {
  static status = 401;
  static code = "UNAUTHORIZED";
  static defaultMessage = "Invalid or expired token";
}

export class Forbidden extends BridgeError {
  static status = 403;
  static code = "FORBIDDEN";
  static defaultMessage = "Insufficient permissions";
}

export class NotFound extends BridgeError {
  static status = 404;
  static code = "NOT_FOUND";
  static defaultMessage = "Resource not found";
}

export class ModelNotFound extends NotFound {
  static code = "MODEL_NOT_FOUND";
  static defaultMessage = "Model not found";
}

export class MethodNotAllowed extends BridgeError {
  static status = 405;
  static code = "METHOD_NOT_ALLOWED";
  static defaultMessage = "Method not allowed";
}

export class Conflict extends BridgeError {
  static status = 409;
  static code = "CONFLICT";
  static defaultMessage = "Conflict";
}

export class PayloadTooLarge extends BridgeError {
  static status = 413;
  static code = "PAYLOAD_TOO_LARGE";
  static defaultMessage = "Request body too large";
}

export class RateLimitExceeded extends BridgeError {
  static status = 429;
  static code = "RATE_LIMIT_EXCEEDED";
  static defaultMessage = "Rate limit exceeded";

  /** Seconds to wait before trying again (the `Retry-After` header), or undefined. */
  get retryAfter() {
    const value = this.headers["retry-after"] ?? this.details.retryAfter;
    if (value === undefined || value === null || value === "") return undefined;
    const seconds = Number(value);
    return Number.isFinite(seconds) ? seconds : undefined;
  }
}

export class NotSupported extends BridgeError {
  static status = 501;
  static code = "NOT_SUPPORTED";
  static defaultMessage = "Not supported";
}

export class DownloadFailed extends BridgeError {
  static status = 502;
  static code = "DOWNLOAD_FAILED";
  static defaultMessage = "Failed to download model";
}

export class BackendUnavailable extends BridgeError {
  static status = 503;
  static code = "BACKEND_UNAVAILABLE";
  static defaultMessage = "No backend can answer";
}

export class ServiceUnreachable extends BridgeError {
  static status = 503;
  static code = "SERVICE_UNREACHABLE";
  static defaultMessage = "Cannot reach the service";
}

/** The name for RateLimitExceeded: the same class. */
export const RateLimited = RateLimitExceeded;

export const ERROR_CLASSES = [
  BridgeError, ValidationError, ContextLengthExceeded, ModelTypeMismatch, Unauthorized, Forbidden, NotFound, ModelNotFound,
  MethodNotAllowed, Conflict, PayloadTooLarge, RateLimitExceeded, NotSupported,
  DownloadFailed, BackendUnavailable, ServiceUnreachable,
];
// An unknown code falls back on the most general class of its HTTP status (ValidationError
// for 400, NotFound for 404, BackendUnavailable for 503), else BridgeError.
const BY_STATUS = ERROR_CLASSES.filter((cls) => cls !== BridgeError && cls !== ServiceUnreachable);

/** The class for an envelope `code`, else the class of that HTTP status, else BridgeError. */
export function errorForCode(code, status = 500) {
  return ERROR_CLASSES.find((cls) => cls.code === code)
    || BY_STATUS.find((cls) => cls.status === status)
    || BridgeError;
}

const KEPT_HEADERS = ["retry-after", "x-request-id"];

/**
 * The typed error for `{"error": {"code", "message", "details", "request_id"}}`, or AQ's flat
 * `{"error": "not_found", "message": ...}`.
 * @param {unknown} envelope
 * @param {number} status
 * @param {Headers | Record<string, string>} [headers]
 */
export function errorFromEnvelope(envelope, status, headers) {
  const kept = {};
  if (headers) {
    for (const name of KEPT_HEADERS) {
      const value = typeof headers.get === "function" ? headers.get(name) : headers[name];
      if (value !== null && value !== undefined) kept[name] = String(value);
    }
  }
  const err = envelope && typeof envelope === "object" ? envelope.error : undefined;
  let code = "";
  let message;
  let details = {};
  let requestId;
  if (err && typeof err === "object") {
    code = String(err.code || "");
    message = err.message;
    details = err.details && typeof err.details === "object" ? toCamel(err.details) : {};
    requestId = err.request_id || undefined;
  } else if (typeof err === "string") {
    code = err.toUpperCase();
    message = envelope.message;
    if (envelope.retry_after !== undefined) details = { retryAfter: envelope.retry_after };
  }
  const cls = errorForCode(code, status);
  return new cls(message ? String(message) : undefined, {
    details,
    headers: kept,
    requestId: requestId ?? kept["x-request-id"],
    code: code || undefined,
    status: cls === BridgeError ? status : undefined,
  });
}
