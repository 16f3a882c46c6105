"""OpenAI's ``response_format`` decoded into the request's JSON-schema constraint.

``{"type": "text"}`` (or none): free text; ``{"type": "json_object"}``: any JSON object;
``{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}``: an answer that
matches ``schema`` (what ``client.chat.completions.parse(response_format=Model)`` sends).
Decoding is constrained by the engine's grammar, so ``strict`` true and false behave alike:
the answer always matches (unless ``max_tokens`` cuts it: ``finish_reason`` is then "length").
Shapes from OpenAI's API reference (Chat Completions, ``response_format``).
"""

from __future__ import annotations

import json
from typing import Any

from bridge.errors import ValidationError
from bridge.structured import ANY_OBJECT, schema_text
from bridge.types import ToolCall
from local_api.generation.tools import CHOICES, NAME, ToolSet, read_choice, read_tools

KINDS = ("text", "json_object", "json_schema")


def _refuse(message: str, param: str) -> ValidationError:
    return ValidationError(message, details={"field": param})


def schema_of(body: dict[str, Any]) -> str:
    """The constraint of a chat or completions body: "" (text), or a schema's JSON text.

    ValidationError naming the param (``response_format.json_schema.schema``) when bad."""
    fmt = body.get("response_format")
    if fmt is None:
        return ""
    kind = fmt.get("type")
    if kind not in KINDS:
        raise _refuse(f"response_format.type must be one of {', '.join(KINDS)}; got {kind!r}",
                      "response_format.type")  # fmt: skip
    if kind == "text":
        return ""
    if kind == "json_object":
        return ANY_OBJECT
    spec = fmt.get("json_schema")
    if not isinstance(spec, dict):
        raise _refuse("response_format.json_schema is required for type 'json_schema'",
                      "response_format.json_schema")  # fmt: skip
    name = spec.get("name")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise _refuse("response_format.json_schema.name must be 1-64 letters, digits, _ or -",
                      "response_format.json_schema.name")  # fmt: skip
    if not isinstance(spec.get("strict", False), bool | None):
        raise _refuse("response_format.json_schema.strict must be a boolean",
                      "response_format.json_schema.strict")  # fmt: skip
    schema = spec.get("schema")
    if schema is None or schema == {}:
        return ANY_OBJECT
    return schema_text(schema, "response_format.json_schema.schema")


def tools_of(body: dict[str, Any]) -> ToolSet | None:
    """``tools``, ``tool_choice`` and ``parallel_tool_calls`` as a ToolSet (None: no tools).

    ValidationError naming the param: a tool that is not ``{"type": "function", "function":
    {"name", "parameters"?}}``, a parameters schema that is not one, a ``tool_choice`` that
    names an unknown function or is none of auto/none/required (the checks of
    local_api.generation.tools, shared by every surface)."""
    if body.get("functions"):
        raise _refuse("functions is deprecated and not supported: use tools", "functions")
    tools = read_tools(body.get("tools") or [])
    choice = body.get("tool_choice")
    if isinstance(choice, str) and choice not in CHOICES:  # OpenAI names a function by object
        raise _refuse("tool_choice must be auto, none, required or {type: function, ...}",
                      "tool_choice")  # fmt: skip
    chosen = read_choice(choice, tools)
    if not tools:
        return None
    return ToolSet(tools, chosen, body.get("parallel_tool_calls") is not False)


def history_text(raw: dict[str, Any], index: int) -> str | None:
    """An assistant turn's ``tool_calls`` as the text the model answers tool calls in (None
    when it has none); a tool turn's ``tool_call_id`` is checked. ValidationError when bad."""
    where = f"messages[{index}]"
    if raw["role"] == "tool" and not isinstance(raw.get("tool_call_id"), str):
        raise _refuse(f"{where}.tool_call_id is required for a tool message",
                      f"{where}.tool_call_id")  # fmt: skip
    calls = raw.get("tool_calls")
    if raw["role"] != "assistant" or not calls:
        return None
    listed = []
    for j, call in enumerate(calls if isinstance(calls, list) else [None]):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) \
                or not isinstance(fn.get("arguments"), str):  # fmt: skip
            raise _refuse(f"{where}.tool_calls[{j}] needs function.name and function.arguments",
                          f"{where}.tool_calls[{j}]")  # fmt: skip
        try:
            arguments = json.loads(fn["arguments"])
        except ValueError:
            raise _refuse(f"{where}.tool_calls[{j}].function.arguments is not JSON",
                          f"{where}.tool_calls[{j}].function.arguments") from None  # fmt: skip
        listed.append({"name": fn["name"], "arguments": arguments})
    return json.dumps({"tool_calls": listed}, ensure_ascii=False)


def call_deltas(call: ToolCall) -> list[dict[str, Any]]:
    """A tool call as OpenAI streams it: a delta with its index, id, type and name (arguments
    ""), then one with the argument text, by ``index`` (OpenAI's chat.completion.chunk)."""
    first = {"index": call.index, "id": call.id, "type": "function",
             "function": {"name": call.name, "arguments": ""}}  # fmt: skip
    rest = {"index": call.index, "function": {"arguments": call.arguments}}
    return [{"tool_calls": [first]}, {"tool_calls": [rest]}]
