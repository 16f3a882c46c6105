"""Anthropic's Messages API decoded into the one GenerateRequest, and its answers encoded.

Shapes from Anthropic's API reference ("Messages", "Count message tokens") and the types of
its Python client (``anthropic.types.Message``, ``ContentBlock``, ``Usage``):

- request: ``model``, ``max_tokens`` (required), ``system`` (a string or text blocks),
  ``messages`` ([{role: user|assistant, content: a string or blocks}]; blocks ``text``,
  ``tool_use`` {id, name, input} from the assistant, ``tool_result`` {tool_use_id, content,
  is_error} from the user, ``thinking``/``redacted_thinking`` (dropped: a model re-derives
  its reasoning)), ``stop_sequences``, ``temperature`` (0-1), ``top_p``, ``top_k``,
  ``tools`` ([{name, description, input_schema}]), ``tool_choice`` ({type: auto|any|tool|
  none, name, disable_parallel_tool_use}), ``output_config.format`` ({type: json_schema,
  schema}: structured output, bridge.structured), ``stream``; ``metadata``, ``thinking``,
  ``service_tier`` and the like are accepted and ignored.
- answer: ``{id, type: "message", role: "assistant", model, content: [blocks], stop_reason:
  end_turn|max_tokens|tool_use, stop_sequence: null, usage: {input_tokens, output_tokens}}``.

Tools go through the same ToolSet as OpenAI's (local_api.generation.tools): an Anthropic
tool is an OpenAI function with ``input_schema`` as its ``parameters``.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from bridge import errors, params
from bridge.structured import schema_text
from bridge.types import GenerateRequest, Message
from local_api.generation.tools import ToolSet
from local_api.openai import formats
from local_api.validation import check

_TEXT = {"type": "object", "required": ["type", "text"],
         "properties": {"type": {"const": "text"}, "text": {"type": "string"}}}  # fmt: skip
_BLOCK = {"type": "object", "required": ["type"], "properties": {"type": {"type": "string"}}}
_MESSAGE = {
    "type": "object",
    "required": ["role", "content"],
    "properties": {
        "role": {"enum": ["user", "assistant"]},
        "content": {"type": ["string", "array"], "maxLength": params.TEXT_MAX,
                    "items": _BLOCK},  # fmt: skip
    },
}
_TOOL = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "type": {"enum": ["custom", None]},
        "name": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
        "description": {"type": "string"},
        "input_schema": {"type": "object"},
    },
}
COUNT: dict[str, Any] = {
    "type": "object",
    "required": ["model", "messages"],
    "properties": {
        "model": {"type": "string", "minLength": 1, "maxLength": 128},
        "system": {"type": ["string", "array"], "items": _TEXT},
        "messages": {"type": "array", "minItems": 1, "maxItems": 1000, "items": _MESSAGE},
        "tools": {"type": "array", "maxItems": 128, "items": _TOOL},
        "tool_choice": {
            "type": "object",
            "required": ["type"],
            "properties": {"type": {"enum": ["auto", "any", "tool", "none"]},
                           "name": {"type": "string"},
                           "disable_parallel_tool_use": {"type": "boolean"}},
        },
    },
}
MESSAGES: dict[str, Any] = {
    **COUNT,
    "required": ["model", "max_tokens", "messages"],
    "properties": {
        **COUNT["properties"],
        "max_tokens": {"type": "integer", "minimum": 1},
        "stop_sequences": {"type": "array", "maxItems": 4,
                           "items": {"type": "string", "minLength": 1, "maxLength": 64}},
        "temperature": {"type": "number", "minimum": 0, "maximum": 1},
        "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "top_k": {"type": "integer", "minimum": 0, "maximum": 1000},
        "stream": {"type": "boolean"},
        "output_config": {"type": "object", "properties": {"format": {
            "type": ["object", "null"], "required": ["type", "schema"],
            "properties": {"type": {"const": "json_schema"}, "schema": {"type": "object"}}}}},
    },
}
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
NAMES = {"max_tokens": "max_tokens", "stop": "stop_sequences", "messages": "messages"}


def _refuse(message: str) -> errors.ValidationError:
    return errors.ValidationError(message)


def validate(body: dict[str, Any], schema: dict[str, Any]) -> None:
    check(body, schema)


def _text(content: Any, where: str) -> str:
    """A string, or text blocks joined (anything else refused)."""
    if isinstance(content, str):
        return content
    parts = []
    for j, block in enumerate(content or []):
        if block.get("type") != "text" or not isinstance(block.get("text"), str):
            raise _refuse(f"{where}.{j}: only text blocks are supported here, not "
                          f"{block.get('type')!r}")  # fmt: skip
        parts.append(block["text"])
    return "".join(parts)


def _turns(raw: dict[str, Any], index: int) -> list[Message]:
    """One Anthropic message as bridge Messages: tool results become tool turns, tool uses
    the assistant's tool-call text (formats.history_text's shape)."""
    where = f"messages.{index}.content"
    content = raw["content"]
    if isinstance(content, str):
        return [Message(raw["role"], content)]
    out: list[Message] = []
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        kind = block["type"]
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind in ("thinking", "redacted_thinking") and raw["role"] == "assistant":
            continue
        elif kind == "tool_use" and raw["role"] == "assistant":
            if not isinstance(block.get("name"), str) or not isinstance(block.get("input"), dict):
                raise _refuse(f"{where}.{j}: a tool_use block needs name and input (an object)")
            calls.append({"name": block["name"], "arguments": block["input"]})
        elif kind == "tool_result" and raw["role"] == "user":
            if not isinstance(block.get("tool_use_id"), str):
                raise _refuse(f"{where}.{j}.tool_use_id: Field required")
            result = _text(block.get("content") or "", f"{where}.{j}.content")
            if block.get("is_error"):
                result = f"Error: {result}"
            out.append(Message("tool", result))
        else:
            raise _refuse(f"{where}.{j}.type: {kind!r} blocks are not supported in a "
                          f"{raw['role']} message here")  # fmt: skip
    if calls:
        texts.append(json.dumps({"tool_calls": calls}, ensure_ascii=False))
    if texts or not out:
        out.append(Message(raw["role"], "".join(texts)))
    return out


def messages_of(body: dict[str, Any]) -> tuple[Message, ...]:
    """``system`` and ``messages`` as bridge Messages."""
    out: list[Message] = []
    if body.get("system"):
        out.append(Message("system", _text(body["system"], "system")))
    for index, raw in enumerate(body["messages"]):
        out.extend(_turns(raw, index))
    return tuple(out)


def tools_of(body: dict[str, Any]) -> ToolSet | None:
    """Anthropic's ``tools`` and ``tool_choice`` as the pipeline's ToolSet (OpenAI's shape).
    A bad ``input_schema`` is refused under its own name (``tools[i].input_schema``)."""
    for i, tool in enumerate(body.get("tools") or []):
        if tool.get("input_schema") is not None:
            schema_text(tool["input_schema"], f"tools[{i}].input_schema")
    tools = [{"type": "function", "function": {
        "name": t["name"], "description": t.get("description"),
        "parameters": t.get("input_schema")}} for t in body.get("tools") or []]  # fmt: skip
    choice = body.get("tool_choice") or {"type": "auto"}
    kind = choice["type"]
    if kind == "tool":
        if not isinstance(choice.get("name"), str):
            raise _refuse("tool_choice.name: Field required")
        names = [t["name"] for t in body.get("tools") or []]
        if choice["name"] not in names:
            raise _refuse(f"tool_choice.name: {choice['name']!r} is not one of tools")
        wanted: Any = {"type": "function", "function": {"name": choice["name"]}}
    else:
        wanted = {"auto": "auto", "any": "required", "none": "none"}[kind]
    if kind == "any" and not tools:  # as the pipeline refuses "required" without tools
        raise _refuse("tool_choice: 'any' needs tools")
    if not tools:
        return None
    return formats.tools_of({"tools": tools, "tool_choice": wanted,
                             "parallel_tool_calls": not choice.get("disable_parallel_tool_use")})


def build_request(body: dict[str, Any], messages: tuple[Message, ...]) -> GenerateRequest:
    """The GenerateRequest of a validated Messages body (Anthropic's temperature default 1)."""
    temperature = body.get("temperature")
    fmt = (body.get("output_config") or {}).get("format")
    return GenerateRequest(
        model=body["model"],
        messages=messages,
        max_tokens=body["max_tokens"],
        temperature=float(1.0 if temperature is None else temperature),
        top_p=float(body.get("top_p") or 1.0),
        top_k=int(body.get("top_k") or 0),
        stop=tuple(body.get("stop_sequences") or ()),
        defaulted=params.omitted(body, {"repetition_penalty": None, "frequency_penalty": None,
                                        "presence_penalty": None}),  # fmt: skip
        json_schema=schema_text(fmt["schema"], "output_config.format.schema") if fmt else "",
    )


def new_id(prefix: str = "msg_") -> str:
    return prefix + secrets.token_hex(12)


def tool_id(call_id: str) -> str:
    """A tool call's id the way Anthropic spells them (``toolu_…``)."""
    return "toolu_" + call_id.removeprefix("call_")


def blocks(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """The content blocks of a finished answer: thinking, text, tool uses."""
    out: list[dict[str, Any]] = []
    if answer.get("reasoning"):
        out.append({"type": "thinking", "thinking": answer["reasoning"], "signature": ""})
    if answer["text"] or not answer.get("tool_calls"):
        out.append({"type": "text", "text": answer["text"]})
    for call in answer.get("tool_calls") or []:
        out.append({"type": "tool_use", "id": tool_id(call["id"]),
                    "name": call["function"]["name"],
                    "input": json.loads(call["function"]["arguments"])})  # fmt: skip
    return out


def usage(answer: dict[str, Any]) -> dict[str, int]:
    return {"input_tokens": answer["usage"]["prompt_tokens"],
            "output_tokens": answer["usage"]["completion_tokens"]}  # fmt: skip


def message(answer: dict[str, Any], id_: str) -> dict[str, Any]:
    """A whole ``message`` object (plus this service's ``backend``)."""
    return {
        "id": id_,
        "type": "message",
        "role": "assistant",
        "model": answer["model"],
        "content": blocks(answer),
        "stop_reason": STOP_REASONS.get(answer["finish_reason"], "end_turn"),
        "stop_sequence": None,
        "usage": usage(answer),
        "backend": answer["backend"],
    }
