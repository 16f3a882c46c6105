"""Reasoning separated from the answer: a model's ``<think>…</think>`` text becomes
``Reasoning`` events, the rest stays ``Token`` events, as the stream goes.

The markers are those of the reasoning models llama.cpp and Ollama parse by default
(DeepSeek-R1, Qwen3, QwQ: llama.cpp ``common/chat.cpp``, ``reasoning_format``). A marker may
arrive split across tokens, so text that could start one is held back until it cannot. The
answer's first text after the block loses its leading whitespace (the models put a blank
line there). A block the model never closes (cut by ``max_tokens``) is all reasoning.
Tested with a scripted backend: no small thinking model is available offline here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from bridge.types import Done, Event, Reasoning, Token

OPEN, CLOSE = "<think>", "</think>"


def _held(text: str, marker: str) -> int:
    """How many trailing characters of ``text`` could be the start of ``marker``."""
    for size in range(min(len(marker) - 1, len(text)), 0, -1):
        if marker.startswith(text[-size:]):
            return size
    return 0


class _Splitter:
    def __init__(self) -> None:
        self.inside = False
        self.buffer = ""
        self.trim = False  # strip the answer's leading whitespace after a closed block

    def emit(self, text: str) -> Iterator[Event]:
        if not text:
            return
        if self.inside:
            yield Reasoning(text)
            return
        if self.trim:
            text = text.lstrip()
            self.trim = not text
        if text:
            yield Token(text)

    def feed(self, text: str) -> Iterator[Event]:
        self.buffer += text
        while True:
            marker = CLOSE if self.inside else OPEN
            at = self.buffer.find(marker)
            if at < 0:
                keep = _held(self.buffer, marker)
                ready, self.buffer = self.buffer[: len(self.buffer) - keep], \
                    self.buffer[len(self.buffer) - keep:]  # fmt: skip
                yield from self.emit(ready)
                return
            yield from self.emit(self.buffer[:at])
            self.buffer = self.buffer[at + len(marker):]
            self.trim = self.inside  # closing a block: trim what follows
            self.inside = not self.inside

    def flush(self) -> Iterator[Event]:
        rest, self.buffer = self.buffer, ""
        yield from self.emit(rest)


def separate(events: Iterable[Event]) -> Iterator[Event]:
    """``events`` with ``<think>`` blocks moved out of Token text into Reasoning events
    (a Token's logprobs stay with the answer text it carried, if any)."""
    splitter = _Splitter()
    for event in events:
        if isinstance(event, Token):
            pieces = list(splitter.feed(event.text))
            if event.logprobs:
                tokens = [p for p in pieces if isinstance(p, Token)]
                if tokens:
                    pieces[pieces.index(tokens[0])] = Token(tokens[0].text, event.logprobs)
                else:
                    pieces.append(Token("", event.logprobs))
            yield from pieces
            continue
        if isinstance(event, Done):
            yield from splitter.flush()
        yield event
