"""ChatWidget: a scrolling transcript with the prompt pinned below (Enter sends, Shift+Enter
adds a newline), answers streamed then rendered as Markdown, a badge and tokens/s per answer,
Stop, New chat, and a picker for earlier conversations."""

from __future__ import annotations

import threading
from typing import Any

import ipywidgets as w

from bridge.sdk.client import Client
from bridge.sdk.stream import ChatStream
from bridge.widgets import transcript as view
from bridge.widgets.base import WIDE, BaseWidget, escape

DEFAULT = "service default"
CHATTABLE = ("ready", "available", "loaded", "remote")
NEW = ""  # the picker's value for "a new conversation" (None would select nothing)


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
        # "" (not None) is the service's default: a Dropdown valued None selects nothing
        start = [(DEFAULT, "")] + ([(model_id, model_id)] if model_id else [])
        self.model = w.Dropdown(description="Model", options=start, value=model_id or "",
                                style=WIDE, layout=w.Layout(width="auto", min_width="24em"))
        self.history = w.Dropdown(description="Conversation", options=[("New", NEW)],
                                  value=NEW, style=WIDE,
                                  layout=w.Layout(width="auto", min_width="18em"))
        self.history.observe(lambda change: self.guard(self._open, change["new"]), "value")
        self.badge = w.HTML()
        self.bubbles: list[Any] = []  # the transcript's turns, oldest first
        # column-reverse keeps the newest turn in view: the browser anchors the scroll at the
        # end, so the transcript scrolls itself while an answer streams (children newest first)
        self.transcript = w.Box(layout=w.Layout(
            display="flex", flex_flow="column-reverse", max_height="26em", overflow="auto",
            border="1px solid var(--jp-border-color2)", padding="4px"))
        self.prompt = w.Textarea(placeholder="Ask something (Enter sends, Shift+Enter: newline)",
                                 layout=w.Layout(width="100%", height="4.5em"))
        self.prompt.add_class("bridge-chat-input")
        self.send_button = w.Button(description="Send", button_style="primary",
                                    icon="paper-plane")
        self.send_button.add_class("bridge-send")
        self.stop_button = w.Button(description="Stop", icon="stop", disabled=True)
        self.new_button = w.Button(description="New chat", icon="plus")
        self.on_click(self.send_button, self.send)
        self.on_click(self.stop_button, self.stop)
        self.on_click(self.new_button, self.new_chat)
        self.widget = w.VBox([
            w.HBox([self.model, self.history]), self.badge, self.transcript, self.prompt,
            w.HBox([self.send_button, self.stop_button, self.new_button]), self.error,
            w.HTML(view.ENTER_TO_SEND),
        ])
        self.widget.add_class("bridge-chat")
        self._stream: ChatStream | None = None
        self._stopping = threading.Event()
        if self.client is not None:
            self.refresh_models(model_id)
            self.guard(self.refresh_conversations)

    def refresh_models(self, selected: str | None = None) -> None:
        """Fill the picker with the models that can answer now."""
        self.guard(self._refresh_models, selected)

    def _refresh_models(self, selected: str | None) -> None:
        keep = selected if selected is not None else self.model.value
        models = [m for m in self.sdk.models.list()
                  if m.status in CHATTABLE and m.type != "embedding"]  # embedders cannot chat
        options: list[tuple[str, str]] = [(DEFAULT, "")]
        options += [(f"{m.name or m.id} ({m.status})", m.id) for m in models]
        if keep and keep not in {value for _, value in options}:
            options.append((keep, keep))  # unknown here: the service will say so
        self.model.options = options
        self.model.value = keep or ""

    def refresh_conversations(self) -> None:
        """Fill the conversation picker with this account's earlier conversations."""
        options = [("New", NEW)] + [
            (f"{(c.title or 'untitled')[:40]} · {str(c.created_at)[:16].replace('T', ' ')}",
             c.id) for c in self.sdk.conversations.list(limit=20)]
        self._opening = True
        try:
            self.history.options = options
            self.history.value = self.conversation_id or NEW
        finally:
            self._opening = False

    def _open(self, conversation_id: str) -> None:
        """Show an earlier conversation; the next message continues it."""
        if getattr(self, "_opening", False) or conversation_id == (self.conversation_id or NEW):
            return
        self.stop()
        self._clear()
        if conversation_id == NEW:
            return
        conversation = self.sdk.conversations.get(conversation_id)
        self.conversation_id = conversation.id
        for message in conversation.messages or []:
            role = "user" if message.role == "user" else "assistant"
            footer = escape(message.backend) if message.get("backend") else ""
            self._bubble(role, message.content, footer)
            self.messages.append({**message})

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
        _ = self.sdk  # no client: says why (the constructor's error)
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
        self._clear()
        self._opening = True
        self.history.value = NEW
        self._opening = False

    def _clear(self) -> None:
        self.conversation_id = None
        self.messages.clear()
        self.bubbles = []
        self.transcript.children = ()
        self.badge.value = ""
        self.clear_error()

    def _answer(self, prompt: str) -> None:
        user = self._bubble("user", prompt)
        reply = self._bubble("assistant", "…")
        text = ""
        try:
            stream = self.sdk.chat.stream(prompt, self.model.value or None,
                                          parameters=self.parameters
                                          or None, conversation_id=self.conversation_id)
            self._stream = stream
            for token in stream:
                text += token
                reply.value = view.bubble("assistant", text, final=False)
                if self._stopping.is_set():
                    stream.close()
                    break
        except Exception:
            if not text:  # nothing answered: take the turn back, keep the prompt
                self.bubbles = [b for b in self.bubbles if b not in (user, reply)]
                self.transcript.children = tuple(reversed(self.bubbles))
                self.prompt.value = prompt
            else:
                reply.value = view.bubble("assistant", text + " [interrupted]")
            raise
        finally:
            self._stream = None
            self._busy(False)
        final = stream.final
        stopped = final is None
        switched = stream.switches[-1].get("from") if stream.switches else None
        bits = [] if stopped else view.footer(final, len(stream.tokens), switched)
        footer = "" if stopped else view.badge(final.backend or "?", bits)
        reply.value = view.bubble("assistant", text + (" [stopped]" if stopped else ""), footer)
        self.messages.append({"role": "user", "content": prompt})
        self.messages.append({"role": "assistant", "content": text,
                              "backend": None if stopped else final.backend})
        if not stopped:
            new = final.conversation_id and final.conversation_id != self.conversation_id
            self.conversation_id = final.conversation_id or self.conversation_id
            self.badge.value = f"<small>last answer: {footer}</small>"
            if new:
                self.guard(self.refresh_conversations)

    def _bubble(self, role: str, text: str, footer: str = "") -> Any:
        bubble = w.HTML(view.bubble(role, text, footer), layout=w.Layout(flex="0 0 auto"))
        self.bubbles.append(bubble)
        self.transcript.children = tuple(reversed(self.bubbles))
        return bubble

    def _busy(self, busy: bool) -> None:
        self.send_button.disabled = busy
        self.stop_button.disabled = not busy
