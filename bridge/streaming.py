"""Event streams as every surface sends them (the API's dialects and the worker alike).

``Primed`` draws the first event at once, so that an error before any byte raises in the
view and gets a real HTTP status (Ollama's rule: an error before the first byte is a
status, after it one more line). ``encode_stream`` is the one loop that encodes events and
turns a later failure into the surface's own error item.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any

from bridge.errors import BackendUnavailable, BridgeError
from bridge.types import Event

log = logging.getLogger(__name__)
UNFINISHED = "The backend ended its answer without finishing it"


class Primed:
    """An event iterator with its first event drawn already; ``close()`` stops it.

    Raises BackendUnavailable when the stream is empty, and whatever the first step
    raises (the underlying stream is closed first).
    """

    def __init__(self, events: Iterator[Event]) -> None:
        self._events = events
        try:
            self._first: Event | None = next(events)
        except StopIteration:
            raise BackendUnavailable(UNFINISHED) from None
        except BaseException:
            self.close()
            raise

    def __iter__(self) -> Primed:
        return self

    def __next__(self) -> Event:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        return next(self._events)

    def close(self) -> None:
        close = getattr(self._events, "close", None)
        if callable(close):
            close()


def encode_stream(
    stream: Primed,
    encode: Callable[[Event], Iterable[Any]],
    encode_error: Callable[[BridgeError], Any],
) -> Generator[Any, None, None]:
    """Each event through ``encode``; a failure after the first byte becomes
    ``encode_error``'s item (an unexpected one an INTERNAL_ERROR, logged); closing this
    generator (a client that left) closes the stream and so stops the generation."""
    try:
        for event in stream:
            yield from encode(event)
    except BridgeError as exc:
        yield encode_error(exc)
    except Exception:
        log.exception("a stream failed after its first byte")
        yield encode_error(BridgeError("Internal server error"))
    finally:
        stream.close()
