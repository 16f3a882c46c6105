"""OpenAI's Responses API, ``POST /v1/responses``, stateless, over the one pipeline.

``client.responses.create(...)`` (streamed or not) and its ``output_text`` work with
``base_url=<service>/v1``. The answer is a ``response`` object (OpenAI's API reference,
"The response object"; ``openai.types.responses.Response``): ``output`` holds a
``reasoning`` item (when the model thought, bridge.reasoning), a ``message`` item with one
``output_text`` part, and ``function_call`` items {call_id, name, arguments}; ``usage``
{input_tokens, output_tokens, total_tokens, *_details}; ``status`` ``completed``, or
``incomplete`` with ``incomplete_details.reason`` ``max_output_tokens``. ``store`` is always
false: nothing is kept (responses_input.py). The stream (``"stream": true``) is OpenAI's
server-sent events, each ``event: <type>`` with a ``sequence_number``: ``response.created``,
``response.in_progress``, ``response.output_item.added``, ``response.content_part.added``,
``response.output_text.delta`` / ``response.reasoning_text.delta`` /
``response.function_call_arguments.delta``, their ``.done`` events,
``response.output_item.done``, ``response.completed``; a failure after the first byte is
one ``error`` event. Errors use OpenAI's shape (the /v1 blueprint's handler).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from flask import Blueprint, Response, current_app

from bridge import errors
from bridge.streaming import encode_stream
from bridge.types import Done, Event, Reasoning, Token, ToolCall
from local_api.accounts.identity import current_identity, login_required
from local_api.docs import spec
from local_api.generation import pipeline
from local_api.generation.sse import sse_response
from local_api.openai import errors as openai_errors
from local_api.openai import formats, responses_input, shapes
from local_api.validation import json_body

bp = Blueprint("openai_responses", __name__)


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def _job(body: dict[str, Any]) -> pipeline.Job:
    settings = current_app.config["SETTINGS"]
    who = current_identity()
    assert who is not None
    responses_input.refuse_state(body)
    messages = responses_input.messages_of(body)
    chat = responses_input.chat_body(body)
    model = body.get("model") or settings.default_model
    request_ = shapes.build_request(chat, model, settings.max_tokens_limit, messages=messages)
    request_ = replace(request_, json_schema=formats.schema_of(chat))
    users = [m.content for m in messages if m.role == "user"]
    return pipeline.start(who, request_, prompt=users[-1] if users else messages[-1].content,
                          names=responses_input.NAMES,
                          tools=responses_input.tools_of(body))  # fmt: skip


class _Items:
    """The output items of one response, with the ids its stream and its object share."""

    def __init__(self) -> None:
        self.message_id, self.reasoning_id = _id("msg"), _id("rs")

    def reasoning(self, text: str, status: str = "completed") -> dict[str, Any]:
        return {"type": "reasoning", "id": self.reasoning_id, "summary": [], "status": status,
                "content": [{"type": "reasoning_text", "text": text}] if text else []}

    def message(self, text: str | None, status: str = "completed") -> dict[str, Any]:
        parts = [] if text is None else [_text_part(text)]
        return {"type": "message", "id": self.message_id, "status": status,
                "role": "assistant", "content": parts}  # fmt: skip

    @staticmethod
    def call(call: ToolCall, status: str = "completed", arguments: str = "") -> dict[str, Any]:
        return {"type": "function_call", "id": "fc_" + call.id.removeprefix("call_"),
                "call_id": call.id, "name": call.name,
                "arguments": arguments or (call.arguments if status == "completed" else ""),
                "status": status}  # fmt: skip

    def output(self, answer: dict[str, Any]) -> list[dict[str, Any]]:
        out = [self.reasoning(answer["reasoning"])] if answer.get("reasoning") else []
        calls = answer.get("tool_calls") or []
        if answer["text"] or not calls:
            out.append(self.message(answer["text"]))
        for i, c in enumerate(calls):
            out.append(self.call(ToolCall(i, c["id"], c["function"]["name"],
                                          c["function"]["arguments"])))  # fmt: skip
        return out


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _usage(answer: dict[str, Any]) -> dict[str, Any]:
    u = answer["usage"]
    return {"input_tokens": u["prompt_tokens"], "output_tokens": u["completion_tokens"],
            "total_tokens": u["total_tokens"], "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0}}  # fmt: skip


def _object(body: dict[str, Any], job: pipeline.Job, id_: str, created: int,
            answer: dict[str, Any] | None, output: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``response`` object: in progress (no answer yet) or finished."""
    cut = answer is not None and answer["finish_reason"] == "length"
    status = "in_progress" if answer is None else "incomplete" if cut else "completed"
    fmt = (body.get("text") or {}).get("format") or {"type": "text"}
    return {
        "id": id_, "object": "response", "created_at": created, "status": status,
        "error": None, "background": False,
        "incomplete_details": {"reason": "max_output_tokens"} if cut else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"), "model": job.request.model,
        "output": output, "parallel_tool_calls": body.get("parallel_tool_calls") is not False,
        "previous_response_id": None, "store": False,
        "temperature": job.request.temperature, "top_p": job.request.top_p,
        "text": {"format": fmt}, "tool_choice": body.get("tool_choice") or "auto",
        "tools": body.get("tools") or [], "truncation": "disabled", "metadata": {},
        "usage": _usage(answer) if answer is not None else None,
        **({"backend": answer["backend"]} if answer is not None else {}),
    }  # fmt: skip


@bp.post("/responses")
@spec("OpenAI: create a response, stateless (stream=true gives server-sent events)",
      body=responses_input.BODY)
@login_required
def create() -> Response:
    body = json_body()
    shapes.validate(body, responses_input.BODY)
    job = _job(body)
    if body.get("stream"):
        response = _stream(body, job)
    else:
        answer = pipeline.complete(job)
        data = _object(body, job, _id("resp"), shapes.now(), answer, _Items().output(answer))
        response = Response(json.dumps(data), mimetype="application/json")
        response.headers["X-Bridge-Backend"] = answer["backend"]
    response.headers["X-Cache"] = job.cache_status
    return response


def _stream(body: dict[str, Any], job: pipeline.Job) -> Response:
    stream = pipeline.open_stream(job)  # errors before any byte get a real status
    id_, created, items = _id("resp"), shapes.now(), _Items()
    state: dict[str, Any] = {"seq": 0, "open": "", "text": "", "index": -1}

    def sse(kind: str, **data: Any) -> str:
        data = {"type": kind, "sequence_number": state["seq"], **data}
        state["seq"] += 1
        return f"event: {kind}\ndata: {json.dumps(data)}\n\n"

    def where(item_id: str) -> dict[str, Any]:
        return {"item_id": item_id, "output_index": state["index"]}

    def close() -> Iterator[str]:
        kind, text = state["open"], state["text"]
        if kind == "reasoning":
            yield sse("response.reasoning_text.done", **where(items.reasoning_id),
                      content_index=0, text=text)  # fmt: skip
            yield sse("response.output_item.done", output_index=state["index"],
                      item=items.reasoning(text))  # fmt: skip
        elif kind == "message":
            yield sse("response.output_text.done", **where(items.message_id), content_index=0,
                      text=text, logprobs=[])  # fmt: skip
            yield sse("response.content_part.done", **where(items.message_id),
                      content_index=0, part=_text_part(text))  # fmt: skip
            yield sse("response.output_item.done", output_index=state["index"],
                      item=items.message(text))  # fmt: skip
        state.update(open="", text="")

    def open_(kind: str, item: dict[str, Any]) -> Iterator[str]:
        yield from close()
        state.update(open=kind, index=state["index"] + 1)
        yield sse("response.output_item.added", output_index=state["index"], item=item)

    def open_message() -> Iterator[str]:
        if state["open"] != "message":
            yield from open_("message", items.message(None, "in_progress"))
            yield sse("response.content_part.added", **where(items.message_id),
                      content_index=0, part=_text_part(""))  # fmt: skip

    def encode(event: Event) -> Iterator[str]:
        if isinstance(event, Reasoning) and event.text:
            if state["open"] != "reasoning":
                yield from open_("reasoning", items.reasoning("", "in_progress"))
            state["text"] += event.text
            yield sse("response.reasoning_text.delta", **where(items.reasoning_id),
                      content_index=0, delta=event.text)  # fmt: skip
        elif isinstance(event, Token) and event.text:
            yield from open_message()
            state["text"] += event.text
            yield sse("response.output_text.delta", **where(items.message_id),
                      content_index=0, delta=event.text, logprobs=[])  # fmt: skip
        elif isinstance(event, ToolCall):
            item = items.call(event, "in_progress")
            yield from open_("function_call", item)
            yield sse("response.function_call_arguments.delta", **where(item["id"]),
                      delta=event.arguments)  # fmt: skip
            yield sse("response.function_call_arguments.done", **where(item["id"]),
                      name=event.name, arguments=event.arguments)  # fmt: skip
            yield sse("response.output_item.done", output_index=state["index"],
                      item=items.call(event))  # fmt: skip
        elif isinstance(event, Done):
            assert job.answer is not None
            if state["index"] < 0:  # an empty answer is still one (empty) message
                yield from open_message()
            yield from close()
            final = _object(body, job, id_, created, job.answer, items.output(job.answer))
            kind = "response.incomplete" if final["status"] == "incomplete" \
                else "response.completed"  # fmt: skip
            yield sse(kind, response=final)

    def encode_error(exc: errors.BridgeError) -> str:
        error = openai_errors.error_body(exc)["error"]
        return sse("error", code=error["code"], message=error["message"],
                   param=error["param"], error=error)  # fmt: skip

    def lines() -> Iterator[str]:
        try:
            started = _object(body, job, id_, created, None, [])
            yield sse("response.created", response=started)
            yield sse("response.in_progress", response=started)
            yield from encode_stream(stream, encode, encode_error)
        finally:
            stream.close()  # also when the client left before the first event

    return sse_response(lines())
