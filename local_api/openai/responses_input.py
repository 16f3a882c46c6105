"""OpenAI's Responses API request (``POST /v1/responses``) decoded into the pipeline's terms.

Shapes from OpenAI's API reference ("Responses: create") and its Python client
(``openai.types.responses.response_create_params``): ``input`` a string or a list of items
(``message`` items {role: user|assistant|system|developer, content: a string or
input_text/output_text parts}, ``function_call`` {call_id, name, arguments},
``function_call_output`` {call_id, output}, ``reasoning`` (dropped)), ``instructions`` (a
system turn first), ``max_output_tokens``, ``temperature``, ``top_p``, ``tools`` (function
tools {type: "function", name, description, parameters, strict}), ``tool_choice``,
``parallel_tool_calls``, ``text.format`` ({type: text|json_object|json_schema, name,
schema, strict}), ``stream``. Stateless, as Ollama's is: ``store`` is accepted and nothing
is stored, so ``previous_response_id`` and ``conversation`` are refused (send the whole
``input`` each turn). Tools and formats go through the same code as chat completions
(formats.py).
"""

from __future__ import annotations

import json
from typing import Any

from bridge import errors, params
from bridge.structured import schema_text
from bridge.types import Message
from local_api.generation.tools import NAME, ToolSet
from local_api.openai import formats

_ITEM = {"type": "object", "properties": {"type": {"type": "string"}}}
_COUNT = {"type": ["integer", "null"], "minimum": 1}
BODY: dict[str, Any] = {
    "type": "object",
    "required": ["input"],
    "properties": {
        "model": {"type": ["string", "null"], "minLength": 1, "maxLength": 128},
        "input": {"type": ["string", "array"], "minLength": 1, "maxLength": params.TEXT_MAX,
                  "minItems": 1, "maxItems": 1000, "items": _ITEM},  # fmt: skip
        "instructions": {"type": ["string", "null"], "maxLength": params.TEXT_MAX},
        "max_output_tokens": _COUNT,
        "temperature": {"type": ["number", "null"], "minimum": 0, "maximum": 2},
        "top_p": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 1},
        "tools": {"type": ["array", "null"], "maxItems": 128, "items": _ITEM},
        "tool_choice": {"type": ["string", "object", "null"]},
        "parallel_tool_calls": {"type": ["boolean", "null"]},
        "text": {"type": ["object", "null"],
                 "properties": {"format": {"type": ["object", "null"]}}},  # fmt: skip
        "stream": {"type": ["boolean", "null"]},
        "store": {"type": ["boolean", "null"]},
        "previous_response_id": {"type": ["string", "null"]},
        "conversation": {"type": ["string", "object", "null"]},
    },
}
NAMES = {"max_tokens": "max_output_tokens", "messages": "input", "prompt": "input"}


def _refuse(message: str, param: str) -> errors.ValidationError:
    return errors.ValidationError(message, details={"field": param})


def refuse_state(body: dict[str, Any]) -> None:
    """This surface stores nothing: a reference to a stored response or conversation is a
    400 that says so (``store`` itself is accepted; nothing is stored either way)."""
    for name in ("previous_response_id", "conversation"):
        if body.get(name):
            raise _refuse(f"{name} is not supported: this server is stateless (store: false); "
                          "send the whole conversation in input", name)  # fmt: skip


def _content(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _refuse(f"{where} must be a string or a list of text parts", where)
    parts = []
    for j, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") not in (
                "input_text", "output_text", "text") or not isinstance(part.get("text"), str):
            raise _refuse("Only input_text and output_text parts are supported",
                          f"{where}[{j}]")  # fmt: skip
        parts.append(part["text"])
    return "".join(parts)


def messages_of(body: dict[str, Any]) -> tuple[Message, ...]:
    """``instructions`` and ``input`` as chat messages; function calls become the assistant
    turn the tool code reads (formats.history_text), their outputs tool turns."""
    out: list[Message] = []
    if body.get("instructions"):
        out.append(Message("system", body["instructions"]))
    raw = body["input"]
    if isinstance(raw, str):
        return (*out, Message("user", raw))
    calls: list[dict[str, Any]] = []
    for i, item in enumerate(raw):
        kind, where = item.get("type", "message"), f"input[{i}]"
        if kind != "function_call" and calls:
            out.append(Message("assistant", json.dumps({"tool_calls": calls})))
            calls = []
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise _refuse("role must be user, assistant, system or developer",
                              f"{where}.role")  # fmt: skip
            role = "system" if role == "developer" else role
            out.append(Message(role, _content(item.get("content"), f"{where}.content")))
        elif kind == "function_call":
            try:
                arguments = json.loads(item["arguments"])
            except (KeyError, TypeError, ValueError):
                raise _refuse("arguments must be a JSON object's text",
                              f"{where}.arguments") from None  # fmt: skip
            if not isinstance(item.get("name"), str):
                raise _refuse("name is required", f"{where}.name")
            calls.append({"name": item["name"], "arguments": arguments})
        elif kind == "function_call_output":
            if not isinstance(item.get("call_id"), str):
                raise _refuse("call_id is required", f"{where}.call_id")
            out.append(Message("tool", _content(item.get("output", ""), f"{where}.output")))
        elif kind != "reasoning":
            raise _refuse(f"input items of type {kind!r} are not supported", f"{where}.type")
    if calls:
        out.append(Message("assistant", json.dumps({"tool_calls": calls})))
    return tuple(out)


def chat_body(body: dict[str, Any]) -> dict[str, Any]:
    """The fields chat completions' decoders read (shapes.build_request, formats)."""
    out = {"max_tokens": body.get("max_output_tokens"), "temperature": body.get("temperature"),
           "top_p": body.get("top_p"), "parallel_tool_calls": body.get("parallel_tool_calls")}
    fmt = (body.get("text") or {}).get("format")
    if fmt and fmt.get("type") == "json_schema":
        if not isinstance(fmt.get("name"), str) or not NAME.fullmatch(fmt["name"]):
            raise _refuse("text.format.name must be 1-64 letters, digits, _ or -",
                          "text.format.name")  # fmt: skip
        if fmt.get("schema"):  # refused under this API's own name
            schema_text(fmt["schema"], "text.format.schema")
        spec = {k: fmt[k] for k in ("name", "schema", "strict") if k in fmt}
        out["response_format"] = {"type": "json_schema", "json_schema": spec}
    elif fmt:
        out["response_format"] = {"type": fmt.get("type")}
    return out


def tools_of(body: dict[str, Any]) -> ToolSet | None:
    """Function tools (flat in this API) as chat completions' ToolSet."""
    tools = []
    for i, tool in enumerate(body.get("tools") or []):
        if tool.get("type") != "function":
            raise _refuse(f"only function tools are supported, not {tool.get('type')!r}",
                          f"tools[{i}].type")  # fmt: skip
        if not isinstance(tool.get("name"), str) or not NAME.fullmatch(tool["name"]):
            raise _refuse(f"tools[{i}].name must be 1-64 letters, digits, _ or -",
                          f"tools[{i}].name")  # fmt: skip
        if tool.get("parameters") is not None:  # refused under this API's own name
            schema_text(tool["parameters"], f"tools[{i}].parameters")
        tools.append({"type": "function", "function": {
            k: tool[k] for k in ("name", "description", "parameters", "strict") if k in tool}})
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "function":
        choice = {"type": "function", "function": {"name": choice.get("name")}}
    return formats.tools_of({"tools": tools, "tool_choice": choice,
                             "parallel_tool_calls": body.get("parallel_tool_calls")})
