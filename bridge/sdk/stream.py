"""Reading the service's answers: error envelopes into typed errors, NDJSON into tokens."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from bridge.errors import BridgeError, ServiceUnreachable, error_for_code
from bridge.sdk.types import Record

_KEPT_HEADERS = ("Retry-After", "X-Request-ID")


def error_from_envelope(
    envelope: Any, status: int, headers: dict[str, str] | None = None
) -> BridgeError:
    """The typed error for ``{"error": {"code", "message", "details"}}`` (or AQ's flat form)."""
    err = envelope.get("error") if isinstance(envelope, dict) else None
    details: dict[str, Any] = {}
    if isinstance(err, dict):
        code, message = str(err.get("code") or ""), err.get("message")
        details = dict(err.get("details") or {})
        if err.get("request_id"):
            headers = {"X-Request-ID": str(err["request_id"]), **(headers or {})}
    elif isinstance(err, str):  # AQ's {"error": "not_found", "message": ...}
        code, message = err.upper(), envelope.get("message")
    else:
        code, message = "", None
    cls = error_for_code(code, status)
    error = cls(str(message) if message else None, details=details, headers=headers)
    if code and code != cls.code:  # a code this SDK does not know: keep the server's
        error.code = code
    if cls is BridgeError:
        error.status = status
    return error


def error_from_response(response: httpx.Response, base_url: str) -> BridgeError:
    """The typed error an HTTP error answer carries (read before calling)."""
    headers = {k: response.headers[k] for k in _KEPT_HEADERS if k in response.headers}
    try:
        envelope = response.json()
    except ValueError:
        envelope = None
    if not isinstance(envelope, dict) or "error" not in envelope:
        text = " ".join(response.text.split())[:200]
        envelope = {"error": {"message": f"HTTP {response.status_code} from {base_url}"
                                         f"{response.request.url.path}: {text}".rstrip(": ")}}
    return error_from_envelope(envelope, response.status_code, headers)


class ChatStream(Iterator[str]):
    """Tokens as the service sends them; afterwards ``final`` holds the whole answer.

    ``for token in client.chat.stream(prompt="Hi"): print(token, end="")``. An error line
    from the service raises its typed error; a connection cut (or closed) before the final
    line raises ``ServiceUnreachable``. ``close()`` (or leaving a ``with`` block) stops the
    generation on the service. ``switches`` lists ``backend_switched`` events, ``tool_calls``
    the tool calls (``{id, name, arguments}``) as they arrive.
    """

    def __init__(self, response: httpx.Response, base_url: str,
                 final: Callable[[dict[str, Any]], Any]) -> None:
        self._response = response
        self._lines = response.iter_lines()
        self._base_url = base_url
        self._final_type = final
        self.tokens: list[str] = []
        self.switches: list[Record] = []
        self.tool_calls: list[Record] = []  # {id, name, arguments} as each call arrives
        self.final: Any = None
        self._done = False

    @property
    def text(self) -> str:
        """The answer so far."""
        return "".join(self.tokens)

    def __iter__(self) -> ChatStream:
        return self

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop reading; the service stops generating for this request. Thread-safe."""
        self._done = True
        try:
            self._response.close()
        except (httpx.HTTPError, OSError, ValueError, RuntimeError):
            pass  # another thread is inside the read; it sees _done and stops

    def __next__(self) -> str:
        while not self._done:
            line = self._next_line()
            if line is None:
                if self._done:  # closed by the reader (another thread's close())
                    break
                self.close()
                raise self._cut("the stream ended before its final line")
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError:
                self.close()
                raise BridgeError(
                    f"the service sent a line that is not JSON: {line[:100]!r}"
                ) from None
            if not isinstance(event, dict):
                continue
            if "error" in event:
                self.close()
                raise error_from_envelope(event, 500)
            if isinstance(event.get("tool_call"), dict):
                self.tool_calls.append(Record(event["tool_call"]))
                continue
            if event.get("event") == "backend_switched":
                self.switches.append(Record(event))
                continue
            if event.get("is_final"):
                self.final = self._final_type(event)
                self.close()
                break
            token = event.get("token")
            if token:
                self.tokens.append(str(token))
                return str(token)
        raise StopIteration

    def _next_line(self) -> str | None:
        try:
            return next(self._lines)
        except StopIteration:
            return None
        except httpx.TimeoutException:
            if self._done:
                return None
            self.close()
            raise self._cut("the service stopped sending (read timed out)") from None
        except (httpx.TransportError, httpx.StreamError, OSError, ValueError) as exc:
            if self._done:  # close() from another thread interrupted the read
                return None
            self.close()
            raise self._cut(f"the connection was cut ({type(exc).__name__})") from None

    def _cut(self, what: str) -> ServiceUnreachable:
        return ServiceUnreachable(
            f"{what} after {len(self.tokens)} tokens from {self._base_url}",
            details={"url": self._base_url, "tokens_received": len(self.tokens)},
        )
