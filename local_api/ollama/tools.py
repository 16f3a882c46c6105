"""Ollama's ``tools`` and ``tool_calls`` on /api/chat, onto the pipeline's ToolSet.

Shapes from Ollama's docs/api.md ("Chat request (with tools)"): a tool is
``{"type": "function", "function": {"name", "description", "parameters"}}``; an answer's
``message.tool_calls`` is ``[{"function": {"index", "name", "arguments": {...}}}]`` with the
arguments as an object (not OpenAI's string), and ``done_reason`` stays "stop"; a stream sends
each call as a message chunk of its own. Ollama has no tool_choice: the model chooses (auto).
"""

from __future__ import annotations

import json
from typing import Any

from bridge.errors import ValidationError
from bridge.structured import schema_text
from bridge.types import ToolCall
from local_api.generation.tools import ToolSet


def _refuse(message: str, field: str) -> ValidationError:
    return ValidationError(message, details={"field": field})


def tools_of(body: dict[str, Any]) -> ToolSet | None:
    """The request's tools (None: none); ValidationError naming the bad one."""
    tools: list[dict[str, Any]] = []
    for i, tool in enumerate(body.get("tools") or []):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            raise _refuse(f"tools[{i}].type must be \"function\"", f"tools[{i}].type")
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise _refuse(f"tools[{i}].function.name is required", f"tools[{i}].function.name")
        if fn.get("parameters") is not None:
            schema_text(fn["parameters"], f"tools[{i}].function.parameters")
        tools.append({"type": "function", "function": {
            k: fn[k] for k in ("name", "description", "parameters") if fn.get(k) is not None}})
    return ToolSet(tuple(tools)) if tools else None


def history_text(raw: dict[str, Any], index: int) -> str | None:
    """An assistant turn's ``tool_calls`` as the text the model answers calls in (None when
    it has none)."""
    calls = raw.get("tool_calls")
    if raw.get("role") != "assistant" or not calls:
        return None
    listed = []
    for j, call in enumerate(calls):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) \
                or not isinstance(fn.get("arguments", {}), dict):  # fmt: skip
            raise _refuse(f"messages[{index}].tool_calls[{j}] needs function.name and "
                          "function.arguments (an object)",
                          f"messages[{index}].tool_calls[{j}]")  # fmt: skip
        listed.append({"name": fn["name"], "arguments": fn.get("arguments", {})})
    return json.dumps({"tool_calls": listed}, ensure_ascii=False)


def call_of(call: ToolCall) -> dict[str, Any]:
    """One call in Ollama's shape (arguments as an object)."""
    return {"function": {"index": call.index, "name": call.name,
                         "arguments": json.loads(call.arguments)}}  # fmt: skip


def calls_of(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """A finished answer's calls in Ollama's shape (from the pipeline's OpenAI-shaped ones)."""
    return [{"function": {"index": i, "name": c["function"]["name"],
                          "arguments": json.loads(c["function"]["arguments"])}}
            for i, c in enumerate(answer.get("tool_calls") or [])]  # fmt: skip
