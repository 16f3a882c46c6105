"""ChatWidget: a prompt box, tokens streaming into the transcript, a model picker, a badge
saying which backend answered, and one conversation kept across turns."""

from __future__ import annotations

import threading
from typing import Any

import ipywidgets as w

from bridge.sdk.client import Client
from bridge.sdk.stream import ChatStream
from bridge.widgets.base import BaseWidget, escape

DEFAULT = "service default"
CHATTABLE = ("ready", "available", "loaded", "remote")
_BUBBLE = ("<div style='margin:2px 0;padding:4px 8px;border-radius:6px;white-space:pre-wrap;"
           "background:{bg}'><b>{who}</b> {text}</div>")
_COLOURS = {"user": "#e8f0fe", "assistant": "#f1f3f4"}


class ChatWidget(BaseWidget):
    """Chat with the service from a notebook: type, press Send, watch the answer stream."""

    def __init__(
        self,
        client: Client | None = None,
        *,
        model_id: str | None = None,
        parameters: dict[str, Any] | None = None,
        **client_options: Any,
    ) -> None:
        super().__init__(client, client_options)
        self.parameters = dict(parameters or {})
        self.conversation_id: str | None = None
        self.messages: list[dict[str, Any]] = []
        start: list[tuple[str, str | None]] = [(DEFAULT, None)]
        self.model = w.Dropdown(description="Model", value=model_id,
                                options=start + ([(model_id, model_id)] if model_id else []))
        self.badge = w.HTML()
        self.transcript = w.VBox()
        self.prompt = w.Textarea(placeholder="Ask something, then press Send",
                                 layout=w.Layout(width="100%", height="4em"))
        self.send_button = w.Button(description="Send", button_style="primary",
                                    icon="paper-plane")
        self.stop_button = w.Button(description="Stop", icon="stop", disabled=True)
        self.new_button = w.Button(description="New chat", icon="plus")
        self.on_click(self.send_button, self.send)
        self.on_click(self.stop_button, self.stop)
        self.on_click(self.new_button, self.new_chat)
        self.widget = w.VBox([
            w.HBox([self.model, self.badge]), self.transcript, self.prompt,
            w.HBox([self.send_button, self.stop_button, self.new_button]), self.error,
        ])
        self._stream: ChatStream | None = None
        self._stopping = threading.Event()
        if self.client is not None:
            self.refresh_models(model_id)

    def refresh_models(self, selected: str | None = None) -> None:
        """Fill the picker with the models that can answer now."""
        self.guard(self._refresh_models, selected)

    def _refresh_models(self, selected: str | None) -> None:
        keep = selected if selected is not None else self.model.value
        models = [m for m in self.sdk.models.list() if m.status in CHATTABLE]
        options: list[tuple[str, str | None]] = [(DEFAULT, None)]
        options += [(f"{m.name or m.id} ({m.status})", m.id) for m in models]
        if keep is not None and keep not in {value for _, value in options}:
            options.append((keep, keep))  # unknown here: the service will say so
        self.model.options = options
        self.model.value = keep

    @property
    def busy(self) -> bool:
        """True while an answer is streaming."""
        return bool(self.send_button.disabled)

    def send(self, text: str | None = None) -> threading.Thread | None:
        """Send ``text`` (or what is in the prompt box); the answer streams in a thread."""
        result: threading.Thread | None = self.guard(self._send, text)
        return result

    def _send(self, text: str | None) -> threading.Thread | None:
        if text is not None:
            self.prompt.value = text
        prompt = str(self.prompt.value).strip()
        if not prompt:
            self.show_error("Type a message first.")
            return None
        if self.send_button.disabled:
            self.show_error("Still answering: wait, or press Stop.")
            return None
        if self.client is None:
            raise ValueError("this widget has no client: give client= or a valid base_url=")
        self.clear_error()
        self.prompt.value = ""
        self._busy(True)
        self._stopping.clear()
        return self.in_thread(self._answer, prompt)

    def stop(self) -> None:
        """Stop the answer being streamed (the service stops generating it)."""
        self._stopping.set()
        stream = self._stream
        if stream is not None:
            stream.close()

    def new_chat(self) -> None:
        """Forget the conversation and clear the transcript."""
        self.stop()
        self.conversation_id = None
        self.messages.clear()
        self.transcript.children = ()
        self.badge.value = ""
        self.clear_error()

    def _answer(self, prompt: str) -> None:
        user = self._bubble("user", prompt)
        reply = self._bubble("assistant", "…")
        text = ""
        try:
            stream = self.sdk.chat.stream(prompt, self.model.value, parameters=self.parameters
                                          or None, conversation_id=self.conversation_id)
            self._stream = stream
            for token in stream:
                text += token
                reply.value = self._html("assistant", text)
                if self._stopping.is_set():
                    stream.close()
                    break
        except Exception:
            if not text:  # nothing answered: take the turn back, keep the prompt
                self.transcript.children = tuple(c for c in self.transcript.children
                                                 if c not in (user, reply))
                self.prompt.value = prompt
            else:
                reply.value = self._html("assistant", text + " [interrupted]")
            raise
        finally:
            self._stream = None
            self._busy(False)
        final = stream.final
        stopped = final is None
        reply.value = self._html("assistant", text + (" [stopped]" if stopped else ""))
        self.messages.append({"role": "user", "content": prompt})
        self.messages.append({"role": "assistant", "content": text,
                              "backend": None if stopped else final.backend})
        if not stopped:
            self.conversation_id = final.conversation_id or self.conversation_id
            self._show_badge(final, stream)

    def _show_badge(self, final: Any, stream: ChatStream) -> None:
        metrics = final.get("metrics") or {}
        usage = final.get("usage") or {}
        rate = metrics.get("tokens_per_second")
        bits = [f"{usage.get('completion_tokens', len(stream.tokens))} tokens"]
        if rate:
            bits.append(f"{rate:.1f} tok/s")
        if stream.switches:
            bits.append(f"switched from {stream.switches[-1].get('from')}")
        self.badge.value = (
            "<span style='background:#188038;color:white;border-radius:8px;padding:1px 8px'>"
            f"{escape(final.backend)}</span> <small>{escape(' · '.join(bits))}</small>")

    def _bubble(self, role: str, text: str) -> Any:
        bubble = w.HTML(self._html(role, text))
        self.transcript.children = (*self.transcript.children, bubble)
        return bubble

    @staticmethod
    def _html(role: str, text: str) -> str:
        who = "You" if role == "user" else "Assistant"
        return _BUBBLE.format(bg=_COLOURS[role], who=who, text=escape(text))

    def _busy(self, busy: bool) -> None:
        self.send_button.disabled = busy
        self.stop_button.disabled = not busy
