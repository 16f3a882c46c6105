"""What the notebook widgets share: a client, an error line, guarded callbacks, threads.

Widgets are plain ipywidgets (no front-end build), so they render in JupyterLab,
Notebook 7, VS Code and Colab. Work that waits on the network runs in a thread, so the
kernel stays free; every failure is shown in the widget, never raised into the kernel.
"""

from __future__ import annotations

import html
import logging
import threading
from collections.abc import Callable
from typing import Any

import ipywidgets as w

from bridge.sdk.client import Client
from bridge.widgets import text

log = logging.getLogger("compute_bridge.widgets")
# JupyterLab's theme variables (light and dark themes set them; the fallback is for a page
# without them, e.g. VS Code's older renderer).
ERROR_STYLE = "color:var(--jp-error-color1,#b00020);font-weight:600"
WIDE = {"description_width": "initial"}  # a label is never cut to "Client sec…"


def describe_error(exc: BaseException) -> str:
    """One line a notebook user can act on (see bridge.widgets.text.error)."""
    return text.error(exc)


def escape(value: Any) -> str:
    return html.escape(str(value))


def close_all(widget: Any) -> None:
    """Close a widget and every widget inside it."""
    for child in getattr(widget, "children", ()) or ():
        close_all(child)
    widget.close()


class BaseWidget:
    """A widget made of ipywidgets: ``display(it)`` or leave it last in a cell."""

    def __init__(self, client: Client | None, client_options: dict[str, Any]) -> None:
        self.error = w.HTML()
        self.widget: Any = w.VBox()
        self._threads: list[threading.Thread] = []
        self._closed = threading.Event()
        self.client: Client | None = client
        self.secret_fields: list[Any] = []  # Password widgets: their values never shown
        self._no_client: BaseException | None = None
        if client is None:
            try:
                self.client = Client(**client_options)
            except Exception as exc:  # a bad URL: show it once the widget is displayed
                self._no_client = exc
                self.show_error(exc)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    @property
    def sdk(self) -> Client:
        if self.client is None:
            if self._no_client is not None:  # say again why there is none
                raise self._no_client
            raise ValueError("this widget has no client: give client= or a valid base_url=")
        return self.client

    def show_error(self, problem: BaseException | str) -> None:
        secrets = [str(f.value) for f in self.secret_fields]
        line = text.error(problem, secrets)
        self.error.value = (f'<span class="bridge-error" style="{ERROR_STYLE}">'
                            f'⚠ {escape(line)}</span>')

    def clear_error(self) -> None:
        self.error.value = ""

    @property
    def error_text(self) -> str:
        """The error line without its markup ('' when there is none)."""
        text = self.error.value.split(">", 1)[-1].rsplit("<", 1)[0]
        return html.unescape(text.removeprefix("⚠ "))

    def guard(self, action: Callable[..., Any], *args: Any) -> Any:
        """Run ``action``; an exception becomes the error line (logged, never raised)."""
        try:
            return action(*args)
        except Exception as exc:
            log.debug("widget action failed", exc_info=True)
            self.show_error(exc)
            return None

    def on_click(self, button: Any, action: Callable[[], Any]) -> None:
        button.on_click(lambda _button: self.guard(action))

    def in_thread(self, action: Callable[..., Any], *args: Any) -> threading.Thread:
        """Run ``action`` guarded in a daemon thread (``wait()`` joins them)."""
        thread = threading.Thread(target=self.guard, args=(action, *args), daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()]
        self._threads.append(thread)
        thread.start()
        return thread

    def wait(self, timeout: float | None = 60.0) -> bool:
        """Wait for the widget's background work; True when all of it ended."""
        for thread in list(self._threads):
            thread.join(timeout)
        return not any(t.is_alive() for t in self._threads)

    def close(self) -> None:
        """Stop background work and remove the widget from the page."""
        self._closed.set()
        close_all(self.widget)
