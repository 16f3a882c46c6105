"""Keep one Colab runtime alive, renew its proxy token, and notice when Colab took it back."""

# As Google's CLI does (googlecolab/google-colab-cli): a keep-alive GET every ~60 s, the proxy
# token renewed from the assignment list a few minutes before expiry. Renewal does not depend
# on the keep-alive succeeding. As the VS Code extension does (googlecolab/colab-vscode), pings
# stop after an idle time without requests (paid runtimes spend compute units while pinged).
# Each round also reconciles with the assignment list: a runtime missing from it (reclaimed
# after `fit`, capped at 12 h, released elsewhere), or keep-alives answering 404 twice, is
# gone; ``on_gone`` is told why, once, and the thread stops.
# A VM restart keeps the endpoint listed (Colab re-creates the VM under the same assignment) but
# the worker, its kernel and its tunnel are gone: the runtime is a fresh Jupyter server, whose
# /api/status ``started`` (read through the runtime proxy, as Google's clients reach
# /api/kernels and /api/sessions) differs from the one seen before. That counts as gone too.
# That read uses the token in use; the proxy answers an expired or stale token with an empty
# 404 (or a 401), as it answers for a gone runtime (proxy.py): the token is renewed from the
# list and the runtime asked again; a refusal alone never makes a runtime gone.

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from bridge.errors import BackendUnavailable, BridgeError, Conflict, NotFound
from colab_runtime.colab import Assignment, ColabClient
from colab_runtime.proxy import ProxyTokenRefused

log = logging.getLogger(__name__)

GONE_AFTER_404 = 2  # keep-alive 404s in a row that count as a dead runtime (with the list)


class KeepAlive:
    """A daemon thread that keeps one runtime alive, renews its token and watches its lifecycle.

    ``state``: ``alive``; ``idle`` (no request for ``idle_limit`` seconds: pings paused until
    the next request); ``gone`` (Colab no longer holds it; ``gone_reason`` says why).
    """

    def __init__(
        self,
        client: ColabClient,
        assignment: Assignment,
        *,
        interval: float = 60.0,
        renew_margin: float = 300.0,
        idle_limit: float = 0.0,
        last_used: Callable[[], float] | None = None,
        on_renew: Callable[[Assignment], None] | None = None,
        on_gone: Callable[[str], None] | None = None,
    ) -> None:
        self.client = client
        self.assignment = assignment
        self.interval = interval
        self.renew_margin = renew_margin
        self.idle_limit = idle_limit
        self.last_used = last_used
        self.on_renew = on_renew
        self.on_gone = on_gone
        self.last_error: BridgeError | None = None  # of the last round; None when it went well
        self.state = "alive"
        self.gone_reason: str | None = None
        self.gone_kind: str | None = None  # "reclaimed", "restarted" or "lost", once gone
        self.pings = 0
        self._missing = 0
        self.started_at: str | None = None  # the runtime's Jupyter server start, once seen
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def preflight(self) -> None:
        """The first keep-alive, right after assign (the CLI releases the runtime if it fails)."""
        self.client.keep_alive(self.assignment.endpoint)
        self.pings += 1
        try:
            self.started_at = self._started()
        except ProxyTokenRefused as exc:  # not the keep-alive's failure: read at a later round
            log.info("%s: %s", self.assignment.endpoint, exc.message)

    def renew(self, current: Assignment | None = None) -> Assignment:
        """Adopt a fresh proxy token from the assignment list (``current``: this runtime's entry
        of a list just read). Raises NotFound (reason ``gone``) when Colab no longer lists it."""
        self.assignment = self.client.renew_proxy_token(self.assignment, current)
        if self.on_renew is not None:
            self.on_renew(self.assignment)
        return self.assignment

    def tick(self) -> None:
        """One round: a keep-alive (unless idle), then reconcile with the list and renew."""
        if self.state == "gone":
            return
        errors: list[BridgeError] = []
        now = self.client.clock()
        idle = (self.idle_limit > 0 and self.last_used is not None
                and now - self.last_used() > self.idle_limit)
        self.state = "idle" if idle else "alive"
        if not idle:
            errors.extend(self._guard(self._ping))
        errors.extend(self._guard(self._reconcile))
        self.last_error = errors[0] if errors else None
        for exc in errors:
            log.warning("keep-alive for %s: %s", self.assignment.endpoint, exc.message)

    def _ping(self) -> None:
        try:
            self.client.keep_alive(self.assignment.endpoint)
            self.pings += 1
            self._missing = 0
        except NotFound:
            self._missing += 1
            raise

    def _reconcile(self) -> None:
        current = self.client.find(self.assignment.endpoint)
        if current is None:
            self._gone(self._why_gone(), "reclaimed")
            return
        if self._missing >= GONE_AFTER_404:
            self._gone("keep-alive answered 404 repeatedly: Colab no longer serves the runtime",
                       "lost")
            return
        started = self._started(current)
        if started and self.started_at and started != self.started_at:
            self._gone(f"Colab restarted the runtime (its server started again at {started}): "
                       "the worker and its tunnel did not survive the restart", "restarted")
            return
        self.started_at = started or self.started_at
        due = self.assignment.token_expires_within(self.renew_margin, self.client.clock())
        if due and current.proxy_url and current.proxy_token != self.assignment.proxy_token:
            self.renew(current)  # the list minted a fresh token: adopt it

    def _started(self, current: Assignment | None = None) -> str | None:
        """The runtime's server start, asked with the token in use; refused (expired or stale),
        asked again with a token renewed from the list (``current``, else read now). A second
        refusal is raised (the round is retried); it never makes the runtime gone."""
        if self.assignment.proxy_token:
            try:
                return self.client.runtime_started(self.assignment)
            except ProxyTokenRefused as exc:
                log.info("%s: %s; renewing it from the assignment list",
                         self.assignment.endpoint, exc.message)
        if current is not None and not current.proxy_url:
            return None  # listed without its proxy: nothing to ask it with this round
        self.renew(current)
        return self.client.runtime_started(self.assignment)

    def _why_gone(self) -> str:
        if self.state == "idle":
            return "Colab reclaimed the idle runtime (no requests for longer than the idle limit)"
        return ("Colab no longer lists the runtime: reclaimed (idle past its fit, or the session "
                "cap of ~12 h), restarted, or released elsewhere")

    def _gone(self, reason: str, kind: str) -> None:
        self.state, self.gone_reason, self.gone_kind = "gone", reason, kind
        self._stop.set()
        log.warning("Colab runtime %s is gone: %s", self.assignment.endpoint, reason)
        if self.on_gone is not None:
            try:
                self.on_gone(reason)
            except Exception:
                log.exception("handling the end of Colab runtime %s failed",
                              self.assignment.endpoint)

    def _guard(self, step: Callable[[], None]) -> list[BridgeError]:
        try:
            step()
        except Exception as exc:  # a failed round is retried next round
            if not isinstance(exc, BridgeError):
                log.exception("keep-alive for %s failed unexpectedly", self.assignment.endpoint)
                exc = BackendUnavailable(f"keep-alive failed: {type(exc).__name__}: {exc}")
            return [exc]
        return []

    @property
    def started(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        """Start the thread (once)."""
        if self._thread is not None:
            raise Conflict("keep-alive already started")
        self._thread = threading.Thread(
            target=self._run, name=f"colab-keepalive-{self.assignment.endpoint}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop the thread and wait for it (not from the thread itself)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.tick()  # never raises: an error is kept in last_error and retried
