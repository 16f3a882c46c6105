"""Server-sent events responses, as /v1 chat completions, /v1/responses and /v1/messages
stream them: ``text/event-stream``, not cached, not buffered by a reverse proxy (nginx's
``X-Accel-Buffering: no``)."""

from __future__ import annotations

from collections.abc import Iterator

from flask import Response, stream_with_context


def sse_response(lines: Iterator[str]) -> Response:
    """A streamed response of ``lines`` (each a whole ``event:``/``data:`` block ending in a
    blank line), run inside the request's context."""
    response = Response(stream_with_context(lines), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    return response
