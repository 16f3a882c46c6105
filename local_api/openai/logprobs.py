"""OpenAI's log-probability fields, decoded from a request and encoded into its answers.

Chat (API reference, ``chat.completions``): ``logprobs: true`` and ``top_logprobs`` 0-20;
each choice (and each streamed chunk) carries ``logprobs: {content: [{token, logprob,
bytes, top_logprobs: [{token, logprob, bytes}]}], refusal: null}``. Completions (the legacy
shape): ``logprobs`` 0-5 alternatives; the choice carries ``{tokens, token_logprobs,
top_logprobs: [{token: logprob}], text_offset}``. The engines give the chat shape
(bridge.types.Token.logprobs); the legacy one is built from it here.
"""

from __future__ import annotations

from typing import Any

from bridge import errors


def requested(body: dict[str, Any], *, chat: bool) -> int | None:
    """How many alternatives a request asks for (None: no logprobs)."""
    if not chat:
        given = body.get("logprobs")
        return None if given is None else int(given)
    if body.get("logprobs"):
        return int(body.get("top_logprobs") or 0)
    if body.get("top_logprobs") is not None:  # OpenAI refuses it alone as well
        raise errors.ValidationError("top_logprobs requires logprobs to be true",
                                     details={"field": "top_logprobs"})  # fmt: skip
    return None


def shape(entries: list[dict[str, Any]], *, chat: bool, offset: int = 0) -> dict[str, Any]:
    """A choice's ``logprobs`` for these tokens; ``offset``: where their text starts in the
    answer (the legacy ``text_offset``)."""
    if chat:
        return {"content": entries, "refusal": None}
    offsets = []
    for entry in entries:
        offsets.append(offset)
        offset += len(entry["token"])
    return {"tokens": [e["token"] for e in entries],
            "token_logprobs": [e["logprob"] for e in entries],
            "top_logprobs": [{t["token"]: t["logprob"] for t in e["top_logprobs"]}
                             for e in entries],
            "text_offset": offsets}  # fmt: skip
