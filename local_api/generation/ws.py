"""WebSocket /ws: chat.stream, system.status subscriptions, model_status and chat_update pushes."""

from __future__ import annotations

import json
import logging
import queue
import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any

from flask import Flask, current_app, g, request
from flask_sock import Sock

from bridge.errors import BridgeError, Unauthorized, ValidationError
from bridge.streaming import encode_stream
from bridge.types import BackendSwitched, Done, Event, Token, ToolCall
from local_api import limits
from local_api.accounts.identity import Identity, current_identity, still_valid
from local_api.docs import spec
from local_api.events import bus
from local_api.generation import formats, pipeline
from local_api.generation.formats import NAMES
from local_api.generation.ws_limits import POLICY_VIOLATION, REVALIDATE_EVERY, SocketCaps
from local_api.system import status
from local_api.validation import check, obj, parse_json

FRAME = {
    "type": "object",
    "properties": {"event": {"type": "string"}, "type": {"type": "string"},
                   "data": {"type": "object"}, "id": {"type": ["string", "integer"]}},
}
CHAT = obj(
    {
        "prompt": pipeline.PROMPT,
        "model_id": pipeline.MODEL_ID,
        "model": pipeline.MODEL_ID,
        "parameters": formats.PARAMETERS,
        "conversation_id": pipeline.CONVERSATION_ID,
        "tool_results": formats.TOOL_RESULTS,
    },
)
log = logging.getLogger("compute_bridge.ws")
STATUS = obj({"interval": {"type": "number", "minimum": 0, "maximum": 3600}}, ("interval",))


class Session:
    """One socket: a send lock shared by the reader loop and the chat threads."""

    def __init__(self, ws: Any, who: Identity, app: Flask) -> None:
        self.ws, self.who, self.app = ws, who, app
        self.lock = threading.Lock()
        self.interval = 0.0
        self.next_status = float("inf")
        self.open = True
        self.cancels: dict[str | int, threading.Event] = {}  # chat id -> set to stop that chat

    def send(self, name: str, data: dict[str, Any], chat_id: str | int | None = None) -> None:
        frame: dict[str, Any] = {"event": name, "type": name, "data": data}
        if chat_id is not None:
            frame["id"] = chat_id
        with self.lock:
            self.ws.send(json.dumps(frame))

    def error(self, exc: BridgeError, request_id: str | None = None,
              chat_id: str | int | None = None) -> None:
        self.send("error", exc.to_dict(request_id or f"ws-{secrets.token_hex(6)}"), chat_id)

    def handle(self, raw: str | bytes) -> None:
        """One client frame; every failure answers an ``error`` frame and the socket stays.

        A frame's optional ``id`` (string or integer) is echoed on every frame answering it, so
        one socket can run several chats at once; ``chat.cancel`` with that ``id`` stops one.
        """
        chat_id = None
        try:
            frame = parse_json(raw)
            if not isinstance(frame, dict):
                raise ValidationError("A frame must be a JSON object")
            check(frame, FRAME)
            name = frame.get("event") or frame.get("type")
            data = frame.get("data") or {}
            chat_id = frame.get("id")
            if name == "chat.stream":
                check(data, CHAT)
                with self.app.app_context():
                    limits.charge(self.who)
                cancel = self._claim(chat_id)
                threading.Thread(target=self.chat, args=(data, chat_id, cancel),
                                 daemon=True).start()
            elif name == "chat.cancel":
                self._cancel(chat_id)
            elif name == "system.status":
                check(data, STATUS)
                self.interval = float(data["interval"])
                self.next_status = time.monotonic() if self.interval else float("inf")
            elif name == "ping":
                self.send("pong", {})
            else:
                raise ValidationError(
                    f"Unknown event {name!r}: use chat.stream, chat.cancel or system.status",
                    details={"event": str(name)[:64]},
                )
        except BridgeError as exc:
            self.error(exc, chat_id=chat_id)
        except Exception:
            self.internal_error(chat_id)

    def _claim(self, chat_id: str | int | None) -> threading.Event:
        """The cancel flag of a new chat; an ``id`` already streaming on this socket is refused."""
        cancel = threading.Event()
        if chat_id is None:
            return cancel
        with self.lock:
            if chat_id in self.cancels:
                raise ValidationError("A chat with this id is already streaming on this socket",
                                      details={"id": chat_id})
            self.cancels[chat_id] = cancel
        return cancel

    def _cancel(self, chat_id: str | int | None) -> None:
        with self.lock:
            cancel = self.cancels.get(chat_id) if chat_id is not None else None
        if cancel is None:
            raise ValidationError("chat.cancel needs the id of a chat streaming on this socket",
                                  details={"id": chat_id})
        cancel.set()

    def internal_error(self, chat_id: str | int | None = None) -> None:
        rid = f"ws-{secrets.token_hex(6)}"
        log.exception("WebSocket frame failed (request %s)", rid)
        self.error(BridgeError("Internal server error"), rid, chat_id)

    def chat(self, data: dict[str, Any], chat_id: str | int | None = None,
             cancel: threading.Event | None = None) -> None:
        """Run one chat.stream through the pipeline, frames out as events come.

        Frames carry ``chat_id`` when the client gave one; ``cancel`` set stops the generation
        at the next event and answers ``chat.cancelled`` ``{"tokens": n}``.
        """
        try:
            self._chat(data, chat_id, cancel or threading.Event())
        finally:
            if chat_id is not None:
                with self.lock:
                    self.cancels.pop(chat_id, None)

    def _chat(self, data: dict[str, Any], chat_id: str | int | None,
              cancel: threading.Event) -> None:
        with self.app.app_context():
            try:
                request, tools, turns = formats.decode(
                    data, data.get("model_id") or data.get("model"))
                job = pipeline.start(self.who, request, prompt=data.get("prompt") or "",
                                     conversation_id=data.get("conversation_id"), names=NAMES,
                                     tools=tools, turns=turns)
                stream = pipeline.open_stream(job)
            except BridgeError as exc:
                self.error(exc, chat_id=chat_id)
                return
            except Exception:
                self.internal_error(chat_id)
                return

            def encode(event: Event) -> Iterator[tuple[str, dict[str, Any]]]:
                if isinstance(event, Token):
                    yield "chat.stream", {"token": event.text, "is_final": False}
                elif isinstance(event, ToolCall):
                    yield "chat.stream", {"token": "", "tool_call": formats.call(event),
                                          "is_final": False}
                elif isinstance(event, BackendSwitched):
                    yield "backend_switched", {"from": event.from_backend,
                                               "to": event.to_backend, "reason": event.reason}
                elif isinstance(event, Done):
                    answer = job.answer
                    assert answer is not None
                    yield "chat.stream", {
                        "token": "", "is_final": True, "completion": answer["text"],
                        "usage": answer["usage"], "backend": answer["backend"],
                        "conversation_id": answer["conversation_id"],
                        "metrics": answer["metrics"], "model_id": answer["model"],
                        "cache": answer.get("cache"),
                        "finish_reason": answer["finish_reason"],
                        **({"tool_calls": formats.calls(answer)} if answer.get("tool_calls")
                           else {}),
                    }

            def encode_error(exc: BridgeError) -> tuple[str, dict[str, Any]]:
                return "error", exc.to_dict(f"ws-{secrets.token_hex(6)}")

            frames = encode_stream(stream, encode, encode_error)
            sent = 0
            try:
                for name, frame in frames:
                    if not self.open:
                        return
                    if cancel.is_set():  # closing the frames stops the generation
                        self.send("chat.cancelled", {"tokens": sent}, chat_id)
                        return
                    self.send(name, frame, chat_id)
                    sent += name == "chat.stream"
            except Exception:  # the socket closed under us: stop generating
                self.open = False
            finally:
                frames.close()

    def tick(self, inbox: queue.Queue[tuple[str, dict[str, Any]]]) -> None:
        while True:
            try:
                name, data = inbox.get_nowait()
            except queue.Empty:
                break
            self.send(name, data)
        now = time.monotonic()
        if now >= self.next_status:
            with self.app.app_context():
                snap = status.snapshot()
            res = snap["resources"]
            gpu = res["gpu"] or {}
            flat = {"cpu": res["cpu"]["usage"], "memory": res["memory"]["used"],
                    "gpu": gpu.get("usage")}
            self.send("system.status", {"resources": flat, "status": snap})
            self.next_status = now + self.interval


def init_app(app: Flask) -> None:
    settings = app.config["SETTINGS"]
    # Frames over the body limit end the socket with 1009 before they are read whole.
    app.config["SOCK_SERVER_OPTIONS"] = {"max_message_size": settings.max_body_bytes}
    caps = SocketCaps(settings)
    sock = Sock(app)

    @app.before_request
    def _authenticate_socket() -> None:
        if request.path != "/ws":
            return
        who = current_identity()
        if who is None:
            raise Unauthorized("WebSocket needs 'Authorization: Bearer <token>' or ?token=")
        caps.admit(who.user_id)
        g.ws_admitted = who.user_id

    @app.teardown_request
    def _release_socket(_exc: BaseException | None) -> None:
        user_id = g.pop("ws_admitted", None)
        if user_id is not None:
            caps.release(user_id)

    @sock.route("/ws")  # type: ignore[untyped-decorator]  # flask_sock ships no type hints
    def websocket(ws: Any) -> None:
        who = current_identity()
        assert who is not None
        session = Session(ws, who, current_app._get_current_object())  # type: ignore[attr-defined]
        with bus().subscribe(who.user_id) as inbox:
            try:
                serve(session, inbox, settings.ws_idle_timeout)
            except Exception:  # ConnectionClosed and friends: the client left
                pass
            finally:
                session.open = False

    spec("WebSocket: chat.stream, system.status, model_status, chat_update", auth="user")(
        app.view_functions["websocket"]
    )


def serve(session: Session, inbox: queue.Queue[tuple[str, dict[str, Any]]],
          idle_timeout: float) -> None:
    """The socket's loop: frames in, pushes out; ends (1008) when the credential is revoked,
    or when no frame (a ``ping`` will do) came for ``idle_timeout`` seconds while no chat with
    an id streams and no system.status subscription runs."""
    ws = session.ws
    now = time.monotonic()
    last_frame, next_check = now, now + REVALIDATE_EVERY
    while session.open:
        raw = ws.receive(timeout=0.1)
        now = time.monotonic()
        if raw is not None:
            last_frame = now
            session.handle(raw)
        session.tick(inbox)
        if now >= next_check:
            next_check = now + REVALIDATE_EVERY
            if not still_valid(session.who):
                session.open = False  # running chats stop at their next event
                session.error(Unauthorized("The credential of this socket was revoked"))
                ws.close(POLICY_VIOLATION, "credential revoked")
                return
        if idle_timeout and now - last_frame > idle_timeout and not session.cancels \
                and not session.interval:
            session.open = False
            ws.close(POLICY_VIOLATION, f"no frame for {idle_timeout:g} s")
            return
