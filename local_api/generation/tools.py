"""Tool calls, done once below the surfaces by constrained decoding (a JSON schema).

Why not llama-server's own tool machinery: in this llama.cpp build its template analysis
(common/chat-auto-parser-generator.cpp) finds no tool-call format in the default model's
template, nor in the Qwen2.5, Hermes-3 or SmolLM3 tool templates tried as overrides, so
``tool_choice: "required"`` produced free text (measured 2026-12-07). Instead, as llama.cpp's
former "generic" tool format did (common_chat_params_init_generic), the tools are stated in a
system turn and the answer is constrained by the engine's own JSON-schema grammar to

    {"tool_calls": [{"name": <one of the tools>, "arguments": <its parameters>}, ...]}
    or, with tool_choice "auto", {"response": "<text>"}

so a forced call (``required`` or a named function) is forced by the grammar, on every engine
that honours ``json_schema`` and through remote workers. The answer is read whole (a tool
request's text is not streamed piecewise) and parsed into ``ToolCall`` events.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, replace
from typing import Any

from bridge.errors import ValidationError
from bridge.structured import schema_text
from bridge.types import GenerateRequest, Message, ToolCall

CHOICES = ("auto", "none", "required")
NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # OpenAI's rule for function (and schema) names


@dataclass(frozen=True)
class ToolSet:
    """Function tools (OpenAI's shape: ``{"type": "function", "function": {name, ...}}``) and
    the choice: auto, none, required, or the one function's name that must be called."""

    tools: tuple[dict[str, Any], ...]
    choice: str = "auto"
    parallel: bool = True

    def active(self) -> bool:
        return bool(self.tools) and self.choice != "none"


def _schema(tools: ToolSet) -> dict[str, Any]:
    chosen = [t["function"] for t in tools.tools
              if tools.choice in CHOICES or t["function"]["name"] == tools.choice]  # fmt: skip
    calls = [{"type": "object", "additionalProperties": False, "required": ["name", "arguments"],
              "properties": {"name": {"const": f["name"]},
                             "arguments": f.get("parameters") or {"type": "object"}}}
             for f in chosen]  # fmt: skip
    one = calls[0] if len(calls) == 1 else {"anyOf": calls}
    listed: dict[str, Any] = {"type": "array", "items": one, "minItems": 1}
    if not tools.parallel:
        listed["maxItems"] = 1
    call = {"type": "object", "additionalProperties": False, "required": ["tool_calls"],
            "properties": {"tool_calls": listed}}  # fmt: skip
    if tools.choice != "auto":
        return call
    text = {"type": "object", "additionalProperties": False, "required": ["response"],
            "properties": {"response": {"type": "string"}}}  # fmt: skip
    return {"anyOf": [call, text]}


def _system(tools: ToolSet) -> str:
    listed = "\n".join(json.dumps(t["function"], ensure_ascii=False) for t in tools.tools)
    forced = {"auto": "", "required": " You must call a tool."}.get(
        tools.choice, f" You must call {tools.choice}.")
    return ("You can call these tools (JSON Schema signatures):\n<tools>\n" + listed +
            '\n</tools>\nTo call tools, answer {"tool_calls": [{"name": ..., "arguments": {...}}]}'
            + ('; to answer in text, {"response": "..."}.' if tools.choice == "auto" else ".")
            + forced)  # fmt: skip


def constrain(request: GenerateRequest, tools: ToolSet) -> GenerateRequest:
    """``request`` with the tools stated in a system turn and its answer constrained to a tool
    call (or, for auto, a text response) by the JSON schema above."""
    if not tools.active():
        return request
    system = Message("system", _system(tools))
    messages = request.messages
    if messages and messages[0].role == "system":
        system = Message("system", messages[0].content + "\n\n" + system.content)
        messages = messages[1:]
    schema = json.dumps(_schema(tools), separators=(",", ":"), sort_keys=True)
    return replace(request, messages=(system, *messages), json_schema=schema)


def parse(text: str) -> tuple[str, list[ToolCall]]:
    """The text and the tool calls of a constrained answer (text as is when it is not whole
    JSON: an answer cut by max_tokens)."""
    try:
        value = json.loads(text)
    except ValueError:
        return text, []
    if not isinstance(value, dict):
        return text, []
    if isinstance(value.get("response"), str):
        return value["response"], []
    found = [c for c in value.get("tool_calls") or [] if isinstance(c, dict)]
    calls = [ToolCall(i, "call_" + secrets.token_hex(12), str(c.get("name")),
                      json.dumps(c.get("arguments") or {}, ensure_ascii=False))
             for i, c in enumerate(found)]  # fmt: skip
    return ("", calls) if calls else (text, [])


def _refuse(message: str, field: str) -> ValidationError:
    return ValidationError(message, details={"field": field})


def read_tools(raw: Any, field: str = "tools", *, flat: bool = False) -> tuple[dict[str, Any], ...]:
    """Function tools in OpenAI's shape (``{"type": "function", "function": {"name",
    "description"?, "parameters"?}}``; with ``flat``, ``{"name", ...}`` alone too), checked and
    trimmed to those keys. ValidationError naming ``field[i]...``: not a function tool, a name
    that is not 1-64 letters, digits, _ or -, parameters that are not a JSON Schema."""
    if not isinstance(raw, list):
        raise _refuse(f"{field} must be a list of function tools", field)
    tools: list[dict[str, Any]] = []
    for i, tool in enumerate(raw):
        where = f"{field}[{i}]"
        if flat and isinstance(tool, dict) and "function" not in tool and "type" not in tool:
            tool = {"type": "function", "function": tool}
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise _refuse(f"{where}.type must be 'function'", f"{where}.type")
        fn = tool.get("function")
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) \
                or not NAME.fullmatch(fn["name"]):  # fmt: skip
            raise _refuse(f"{where}.function.name must be 1-64 letters, digits, _ or -",
                          f"{where}.function.name")  # fmt: skip
        if fn.get("parameters") is not None:
            schema_text(fn["parameters"], f"{where}.function.parameters")
        tools.append({"type": "function", "function": {
            k: fn[k] for k in ("name", "description", "parameters") if fn.get(k) is not None}})
    return tuple(tools)


def read_choice(choice: Any, tools: tuple[dict[str, Any], ...], field: str = "tool_choice") -> str:
    """``tool_choice``: auto (None), none, required, or a function's name (a string, or OpenAI's
    ``{"type": "function", "function": {"name"}}``) that is in ``tools``; else ValidationError
    naming ``field``."""
    names = [t["function"]["name"] for t in tools]
    if isinstance(choice, dict):
        fn = choice.get("function") if choice.get("type") == "function" else None
        choice = fn.get("name") if isinstance(fn, dict) else None
        if choice is None:
            raise _refuse(f"{field} must be {{type: function, function: {{name}}}}", field)
    if choice is None:
        return "auto"
    if not isinstance(choice, str):
        raise _refuse(f"{field} must be auto, none, required or a function's name", field)
    if choice not in CHOICES and choice not in names:
        raise _refuse(f"{field} names function {choice!r}, which is not in tools", field)
    if choice == "required" and not tools:
        raise _refuse(f"{field} 'required' needs tools", field)
    return choice


def calls_text(calls: list[ToolCall]) -> str:
    """Tool calls as the text the model answers them in (stored, and put back in a history)."""
    listed = [{"name": c.name, "arguments": json.loads(c.arguments)} for c in calls]
    return json.dumps({"tool_calls": listed}, ensure_ascii=False)
