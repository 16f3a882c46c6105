"""bridge.reasoning: <think> blocks leave the answer's tokens as Reasoning events, even when a
marker is split across tokens (the way a tokenizer cuts it)."""

from __future__ import annotations

from bridge.reasoning import separate
from bridge.types import Done, Event, Reasoning, Token


def run(*pieces: str) -> tuple[str, str, list[Event]]:
    events = list(separate([*(Token(p) for p in pieces), Done(1, len(pieces))]))
    thought = "".join(e.text for e in events if isinstance(e, Reasoning))
    answer = "".join(e.text for e in events if isinstance(e, Token))
    return thought, answer, events


def test_a_block_split_across_tokens_is_separated() -> None:
    thought, answer, events = run("<th", "ink>Let me", " see.</", "think", ">\n\nThe", " answer.")
    assert (thought, answer) == ("Let me see.", "The answer.")
    assert isinstance(events[-1], Done)


def test_text_without_a_block_streams_as_it_comes() -> None:
    thought, answer, events = run("a < b", " and <t", "able>")
    assert (thought, answer) == ("", "a < b and <table>")
    assert [e.text for e in events if isinstance(e, Token)][0] == "a < b"  # not held back


def test_an_unclosed_block_is_all_reasoning_and_logprobs_stay_with_the_answer() -> None:
    assert run("<think>cut off by", " max_tokens")[:2] == ("cut off by max_tokens", "")
    events = list(separate([Token("<think>x</think>ok", ({"token": "ok"},)), Done(1, 1)]))
    assert events[:2] == [Reasoning("x"), Token("ok", ({"token": "ok"},))]
