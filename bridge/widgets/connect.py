"""ConnectWidget: attach a running worker, any Jupyter runtime, or a Colab runtime (Google
sign-in: the consent link is shown when Google needs it), and detach it again."""

from __future__ import annotations

import threading
import time
from typing import Any

import ipywidgets as w

from bridge.sdk.client import Client
from bridge.sdk.types import ConnectResult
from bridge.widgets import text
from bridge.widgets.base import WIDE, BaseWidget, escape

MODES = (("Worker URL", "worker"), ("Jupyter runtime", "runtime"), ("Colab", "colab"))
ACCELERATORS = ("T4", "L4", "A100", "H100")
# "auto" sends ngrok when an ngrok token is typed, else no tunnel at all: the service then
# picks none for a Jupyter runtime and asks a Colab connect for the token it needs
TUNNELS = (("auto (ngrok with a token)", "auto"), ("ngrok", "ngrok"), ("none", "none"))


class ConnectWidget(BaseWidget):
    """Attach remote compute to the service (admin accounts)."""

    def __init__(self, client: Client | None = None, **client_options: Any) -> None:
        super().__init__(client, client_options)
        self.mode = w.ToggleButtons(options=MODES, value="worker")
        wide, field = w.Layout(width="36em"), w.Layout(width="24em")
        self.url = w.Text(description="URL", placeholder="http://host:8765", layout=wide,
                          style=WIDE)
        self.secret = w.Password(description="Secret", placeholder="worker secret",
                                 layout=field, style=WIDE)
        self.client_id = w.Text(description="Client ID", layout=wide, style=WIDE)
        self.client_secret = w.Password(description="Client secret", layout=field, style=WIDE)
        self.accelerator = w.Dropdown(description="GPU", options=ACCELERATORS, value="T4",
                                      style=WIDE)
        self.model_id = w.Text(description="Model", placeholder="(the worker's default)",
                               layout=field, style=WIDE)
        self.name = w.Text(description="Name", placeholder="(chosen for you)", layout=field,
                           style=WIDE)
        self.tunnel = w.Dropdown(description="Tunnel", options=TUNNELS, value="auto",
                                 style=WIDE)
        self.ngrok_token = w.Password(description="ngrok token", layout=field, style=WIDE)
        self.secret_fields = [self.secret, self.client_secret, self.ngrok_token]
        self.manual = w.Checkbox(value=False, indent=False, style=WIDE,
                                 description="only upload the worker notebook to my Drive")
        self.connect_button = w.Button(description="Connect", button_style="primary",
                                       icon="plug")
        self.disconnect_button = w.Button(description="Disconnect", icon="unlink")
        self.cancel_button = w.Button(description="Cancel", icon="times",
                                      layout=w.Layout(display="none"))
        self.on_click(self.cancel_button, self.cancel)
        self._attempt = 0  # which Connect press the running request belongs to
        self.result = w.HTML()
        self.fields = w.VBox()
        self.on_click(self.connect_button, self.connect)
        self.on_click(self.disconnect_button, self.disconnect)
        self.mode.observe(lambda _change: self._show_fields(), "value")
        self.widget = w.VBox([self.mode, self.fields, w.HBox([self.connect_button,
                              self.cancel_button, self.disconnect_button]), self.result,
                              self.error])
        self.attached: str | None = None
        self._show_fields()

    def _show_fields(self) -> None:
        mode = self.mode.value
        self.url.placeholder = ("http://host:8765" if mode == "worker" else
                                "http://host:8888 (a Jupyter server)")
        self.secret.description = "Secret" if mode == "worker" else "Token"
        self.secret.placeholder = ("worker secret" if mode == "worker" else
                                   "the Jupyter server's token")
        common = [self.model_id, self.name]
        if mode == "worker":
            fields = [self.url, self.secret, *common]
        elif mode == "runtime":
            fields = [self.url, self.secret, *common, self.tunnel, self.ngrok_token]
        else:
            fields = [self.client_id, self.client_secret, self.accelerator, *common,
                      self.tunnel, self.ngrok_token, self.manual]
        self.fields.children = fields

    def body(self) -> dict[str, Any]:
        """The connect request the fields describe (ValueError names a missing field)."""
        mode = self.mode.value

        def need(widget: Any, what: str) -> str:
            value = str(widget.value).strip()
            if not value:
                raise ValueError(f"Fill in {what} first.")
            return value

        body: dict[str, Any] = {}
        if mode == "worker":
            body["worker_url"] = need(self.url, "the worker URL")
            body["worker_secret"] = need(self.secret, "the worker secret")
        elif mode == "runtime":
            body["runtime_url"] = need(self.url, "the runtime URL")
            body["token"] = str(self.secret.value).strip() or None
        else:
            body["credentials"] = {"client_id": need(self.client_id, "the Google client ID"),
                                   "client_secret": need(self.client_secret,
                                                         "the Google client secret")}
            body["accelerator"] = self.accelerator.value
            body["manual"] = bool(self.manual.value) or None
        if mode != "worker":
            token = str(self.ngrok_token.value).strip()
            chosen = self.tunnel.value
            body["tunnel"] = ("ngrok" if token else None) if chosen == "auto" else chosen
            body["ngrok_token"] = token or None
        body["model_id"] = str(self.model_id.value).strip() or None
        body["name"] = str(self.name.value).strip() or None
        return body

    def connect(self) -> threading.Thread | None:
        """Send the connect request in a thread (a launch can take minutes)."""
        result: threading.Thread | None = self.guard(self._start)
        return result

    def _start(self) -> threading.Thread:
        body = self.body()
        _ = self.sdk
        self.clear_error()
        self._attempt += 1
        self._waiting(True)
        threading.Thread(target=self._tick, args=(self._attempt,), daemon=True).start()
        return self.in_thread(self._connect, body, self._attempt)

    def _waiting(self, waiting: bool) -> None:
        self.connect_button.disabled = waiting
        self.cancel_button.layout.display = None if waiting else "none"

    def _tick(self, attempt: int) -> None:
        """Say how long the connect has been waiting, every second, until it ends."""
        started = time.monotonic()
        while attempt == self._attempt and self.connect_button.disabled \
                and not self._closed.is_set():
            waited = text.clock(time.monotonic() - started)
            self.result.value = (f"Connecting… {waited} (starting a runtime can take a few "
                                 "minutes; Cancel stops waiting)")
            time.sleep(1.0)

    def cancel(self) -> None:
        """Stop waiting for the connect (the service may still finish attaching it)."""
        self._attempt += 1
        self._waiting(False)
        self.result.value = ("Cancelled: stopped waiting. The service may still attach it; "
                             "the status view shows its workers.")

    def _connect(self, body: dict[str, Any], attempt: int) -> None:
        try:
            answer = self.sdk.colab.connect(**body)
        except Exception:
            if attempt != self._attempt:
                return  # cancelled: nobody is waiting for this answer
            self.result.value = ""
            raise
        finally:
            if attempt == self._attempt:
                self._waiting(False)
        if attempt == self._attempt:
            self.show(answer)

    def show(self, answer: ConnectResult) -> None:
        if answer.status == "authorization_required" and answer.auth_url:
            self.result.value = (
                "Google needs your consent: "
                f"<a href='{escape(answer.auth_url)}' target='_blank' rel='noopener'>"
                "sign in with Google</a>, allow access, then press Connect again.")
            return
        if answer.get("colab_url"):
            self.result.value = (
                f"<a href='{escape(answer.colab_url)}' target='_blank' rel='noopener'>"
                "Open the worker notebook in Colab</a>, run all, then connect with the "
                "worker URL and secret it prints.")
            return
        info: dict[str, Any] = answer.runtime_info or {}
        facts = ", ".join(f"{k} {v}" for k, v in info.items() if v and k != "details")
        self.attached = answer.worker or self.attached
        self.result.value = (f"<b>{escape(answer.status)}</b>: worker "
                             f"<code>{escape(answer.worker or '?')}</code>"
                             + (f" ({escape(facts)})" if facts else ""))

    def disconnect(self) -> None:
        """Detach the worker this widget attached (or the one named in Name)."""
        self.guard(self._disconnect)

    def _disconnect(self) -> None:
        name = str(self.name.value).strip() or self.attached
        if not name:  # never let the service pick one: it may be a worker someone else uses
            raise ValueError("Fill in the Name of the worker to detach (this widget attached "
                             "none).")
        answer = self.sdk.colab.disconnect(name)
        self.result.value = f"detached <code>{escape(answer.get('worker') or name or '')}</code>"
        self.attached = None
        self.clear_error()
