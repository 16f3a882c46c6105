"""gunicorn's threaded worker, with request heads read in its event loop (slow clients).

gunicorn's ``gthread`` worker hands a connection to a pool thread as soon as its first byte
arrives; the thread then blocks until the whole request head is in. A client that trickles
its headers (Slowloris) or a few hundred half-open connections hold every thread, and the
service stops answering. This worker reads heads the way an event-driven front (nginx's
``client_header_timeout``, uvicorn's h11 loop) does: in the worker's own selector loop,
without a thread, for at most ``header_timeout`` seconds. A connection reaches a thread only
with a complete head (or more bytes than a head may have, for gunicorn's parser to refuse);
one that stays silent or slow past the timeout is closed. Kept-alive connections go through
the same gate for their next request.

Plain HTTP only: TLS connections are handed over as gunicorn does (the handshake runs in a
pool thread), so behind TLS a buffering proxy in front is the bound.
"""

from __future__ import annotations

import selectors
import time
from collections import deque
from functools import partial
from typing import Any

from gunicorn.workers.gthread import TConn, ThreadWorker

END_OF_HEAD = b"\r\n\r\n"


class HeadConn(TConn):  # type: ignore[misc]  # gunicorn ships no type hints
    """A connection that may carry bytes of its head read before a thread took it."""

    prefill = b""

    def init(self) -> None:
        super().init()
        if self.prefill and not self.is_http2:
            self.parser.unreader.unread(self.prefill)
            self.prefill = b""


class HeadBufferingWorker(ThreadWorker):  # type: ignore[misc]
    """``gthread`` that waits for complete request heads without holding a pool thread."""

    header_timeout: float = 10.0  # set per server by run_gunicorn

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.heading: deque[tuple[HeadConn, bytearray]] = deque()
        # the most a head may hold before gunicorn's parser is left to refuse it
        self.max_head = (self.cfg.limit_request_line + 4
                         + self.cfg.limit_request_fields * (self.cfg.limit_request_field_size + 2))

    def accept(self, listener: Any) -> None:
        if self.cfg.is_ssl:
            super().accept(listener)
            return
        try:
            client, address = listener.accept()
        except BlockingIOError:
            return
        self.nr_conns += 1
        self._await_head(HeadConn(self.cfg, client, address, listener.getsockname()))

    def on_client_socket_readable(self, conn: HeadConn, client: Any) -> None:
        """A kept-alive connection's next request: its head is gated like a new one's."""
        if self.cfg.is_ssl:
            super().on_client_socket_readable(conn, client)
            return
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._await_head(conn)

    def _await_head(self, conn: HeadConn) -> None:
        conn.sock.setblocking(False)
        conn.timeout = time.monotonic() + self.header_timeout
        entry = (conn, bytearray())
        self.heading.append(entry)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._read_head, entry))

    def _read_head(self, entry: tuple[HeadConn, bytearray], sock: Any) -> None:
        conn, head = entry
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the client went away
            self._drop(entry)
            return
        head += data
        if END_OF_HEAD not in head and len(head) <= self.max_head:
            return
        self.poller.unregister(sock)
        self.heading.remove(entry)
        if conn.parser is not None:  # kept alive: its parser reads on from this
            conn.parser.unreader.unread(bytes(head))
        else:
            conn.prefill = bytes(head)
        conn.data_ready = True
        self.enqueue_req(conn)

    def _drop(self, entry: tuple[HeadConn, bytearray]) -> None:
        conn = entry[0]
        self.heading.remove(entry)
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass
        self.nr_conns -= 1
        conn.close()

    def murder_pending(self) -> None:
        """gunicorn's own sweep, plus heads not complete within ``header_timeout``."""
        super().murder_pending()
        now = time.monotonic()
        while self.heading and self.heading[0][0].timeout <= now:
            self._drop(self.heading[0])
