"""The SDK's answers: JSON objects with attribute access (``status.resources.cpu.usage``).

Every answer is a ``Record``, a ``dict`` subclass: ``answer["usage"]``, ``answer.usage``,
``answer.get("cache")`` and ``json.dumps(answer)`` all work. The subclasses below only name
the fields each document promises, for editors and ``mypy``; a named field that the server
left out reads as ``None``, an unnamed missing one raises ``AttributeError``.
"""

from __future__ import annotations

from typing import Any, ClassVar


def wrap(value: Any, kind: type[Record] | None = None) -> Any:
    """JSON (dicts, lists) as Records, recursively; ``kind`` for the dicts at the top."""
    if isinstance(value, dict):
        return (kind or Record)(value)
    if isinstance(value, list):
        return [wrap(item, kind) for item in value]
    return value


def human_bytes(value: Any) -> str:
    """A byte count for people: ``1.5 GB``; ``-`` when unknown."""
    if not isinstance(value, int | float) or value <= 0:
        return "-"
    size = float(value)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return "-"


def unwrap(value: Any) -> Any:
    """Records back into plain dicts and lists."""
    if isinstance(value, dict):
        return {key: unwrap(item) for key, item in value.items()}
    if isinstance(value, list):
        return [unwrap(item) for item in value]
    return value


class Record(dict[str, Any]):
    """A JSON object from the API, readable by key or by attribute."""

    _fields: ClassVar[frozenset[str]] = frozenset()
    _nested: ClassVar[dict[str, type[Record]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        names: set[str] = set()
        for klass in cls.__mro__:
            names.update(name for name in klass.__dict__.get("__annotations__", {})
                         if not name.startswith("_"))
        cls._fields = frozenset(names)

    def __init__(self, data: dict[str, Any] | None = None, /, **fields: Any) -> None:
        super().__init__()
        for key, value in {**(data or {}), **fields}.items():
            self[key] = wrap(value, self._nested.get(key))

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            if name in self._fields:
                return None
            raise AttributeError(f"{type(self).__name__} has no field {name!r}") from None

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *self.keys(), *self._fields})

    def to_dict(self) -> dict[str, Any]:
        """A plain-dict copy (for JSON, pandas, printing)."""
        return dict(unwrap(self))


class Usage(Record):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    tokens: int  # FT's shape: completion tokens
    time: str  # FT's shape: ISO 8601 duration


class ToolCall(Record):
    """A tool call of an answer: its id (for ``tool_results``), the function's name and its
    arguments (an object)."""

    id: str
    name: str
    arguments: dict[str, Any]


class Completion(Record):
    """AQ's chat completion, plus which backend answered and where it was stored.

    ``tool_calls`` when the model called tools (``finish_reason: "tool_calls"``); ``parsed``
    (an attribute, not a key) the answer as the request's ``response_format`` asked."""

    completion: str
    model_id: str
    usage: Usage
    backend: str
    conversation_id: str
    finish_reason: str
    metrics: Record
    cache: Record | None
    tool_calls: list[ToolCall] | None
    parsed: Any
    _nested = {"usage": Usage, "tool_calls": ToolCall}

    @property
    def text(self) -> str:
        return str(self.get("completion") or "")


class Generation(Record):
    """FT's generate answer (``response``), with the same extras as a Completion."""

    response: str
    model: str
    usage: Usage
    backend: str
    conversation_id: str
    finish_reason: str
    metrics: Record
    cache: Record | None
    tool_calls: list[ToolCall] | None
    parsed: Any
    _nested = {"usage": Usage, "tool_calls": ToolCall}

    @property
    def text(self) -> str:
        return str(self.get("response") or "")


class Model(Record):
    id: str
    name: str
    size: str | None
    family: str | None
    type: str  # chat or embedding
    status: str
    dimensions: int | None  # an embedding model's vector size
    pooling: str | None  # an embedding model's pooling ("mean, normalized")
    parameters: Record
    quantization_options: list[str]
    source: str | None
    bytes: int | None
    backend: str | None


class DownloadJob(Record):
    """A download's state: FT's status/progress/eta/speed."""

    model_id: str
    status: str
    progress: float
    eta: str | None
    speed: str | None
    error: Record | None


class LoadResult(Record):
    status: str
    model_id: str
    load_time: float
    device: str
    quantization: str
    engine: str | None
    num_ctx: int | None  # tokens of context per request the model got


class Message(Record):
    role: str
    content: str
    timestamp: str
    backend: str | None


class Conversation(Record):
    id: str
    title: str | None
    model: str | None
    created_at: str
    updated_at: str | None
    message_count: int | None
    messages: list[Message]
    _nested = {"messages": Message}


class SystemStatus(Record):
    status: str
    resources: Record
    models: Record
    backends: list[Record]


class ConnectResult(Record):
    status: str
    worker: str | None
    runtime_info: Record | None
    auth_url: str | None
    colab_url: str | None


class Backup(Record):
    id: str
    backup_id: str
    timestamp: str
    size: int | None
    status: str
    restored_at: str | None


class Session(Record):
    user_id: int | None
    username: str | None
    is_authenticated: bool
    role: str | None
    tier: str | None
    expires_at: str | None


class ApiKey(Record):
    id: str
    name: str
    prefix: str
    key: str | None  # only in the answer that created it
    created_at: str
    last_used_at: str | None
    revoked: bool
