"""``n`` > 1 on /v1: several choices for one request, each its own sample.

Each choice is its own job through the one pipeline (generated one after another; a stream
sends choice after choice, each chunk naming its ``index``). A request with a ``seed`` gives
choice ``i`` the seed ``seed + i``, so the choices differ yet the answer is reproducible;
greedy requests (temperature 0) give equal choices, as OpenAI's do. ``usage`` counts the
prompt once and the completion tokens of every choice (OpenAI's accounting).
"""

from __future__ import annotations

from typing import Any

from local_api.openai import logprobs, shapes


def bodies(body: dict[str, Any]) -> list[dict[str, Any]]:
    """One request body per choice (``n`` already validated: 1 to shapes.MAX_CHOICES)."""
    n = int(body.get("n") or 1)
    seed = body.get("seed")
    if n == 1:
        return [body]
    return [{**body, "n": 1, **({"seed": (seed + i) % 2**32} if seed is not None else {})}
            for i in range(n)]  # fmt: skip


def choice(answer: dict[str, Any], index: int, *, chat: bool) -> dict[str, Any]:
    """Choice ``index`` of a non-streamed answer (with its logprobs when asked for)."""
    one: dict[str, Any] = shapes.completion(answer, chat=chat, id_="", created=0)["choices"][0]
    one["index"] = index
    if "logprobs" in answer:
        one["logprobs"] = logprobs.shape(answer["logprobs"], chat=chat)
    if chat and answer.get("reasoning"):  # bridge.reasoning; the name llama.cpp/vLLM use
        one["message"]["reasoning_content"] = answer["reasoning"]
    return one


def usage(answers: list[dict[str, Any]]) -> dict[str, int]:
    """The prompt once, the completion tokens of every choice."""
    prompt = int(answers[0]["usage"]["prompt_tokens"]) if answers else 0
    completion = sum(int(a["usage"]["completion_tokens"]) for a in answers)
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}  # fmt: skip
