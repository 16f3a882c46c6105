"""Constrained decoding on the transformers engine: a request's JSON schema as a token mask.

The grammar library is llguidance (the Rust engine behind Guidance, also used by vLLM, SGLang
and llama.cpp's ``LLAMA_LLGUIDANCE`` build), chosen by measurement (benchmarks/bench_constraints.py,
docs/explanation/engines.md): the fastest schema compile of the four candidates (~3 ms), ~0.6 ms
a token, no dependencies. ``Grammars`` holds the tokenizer as llguidance sees it (built
once per model, ~1 s); ``Matcher`` is one request's state: a logits processor that advances
with each generated token and masks every token the schema does not allow next. Once the JSON
is complete only end-of-generation is allowed, so an answer that ends ``stop`` is whole; one
cut by ``max_tokens`` ends ``length`` (bridge/backends/engines/__init__.py ``stream``).

Errors: ValidationError (400, ``field`` json_schema, which the OpenAI surface names
``response_format``) for a schema the library cannot enforce (``not``, look-around patterns,
remote ``$ref``s): never a silently unconstrained answer.
"""

from __future__ import annotations

import threading
from typing import Any

import llguidance
import llguidance.hf
import llguidance.numpy
import numpy as np
import torch

from bridge.errors import ValidationError
from bridge.structured import parsed


class Grammars:
    """llguidance's view of one model's tokenizer (``vocab`` logits wide), built on first use."""

    def __init__(self, tokenizer: Any, vocab: int, eos: frozenset[int]) -> None:
        self.hf, self.vocab, self.eos = tokenizer, vocab, eos
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    def tokenizer(self) -> Any:
        """The LLTokenizer (llguidance.hf.from_tokenizer: ~1 s, so once per model)."""
        with self._lock:
            if self._tokenizer is None:
                ends = sorted(self.eos) or [int(self.hf.eos_token_id)]
                self._tokenizer = llguidance.hf.from_tokenizer(self.hf, n_vocab=self.vocab,
                                                               eos_token=ends)  # fmt: skip
            return self._tokenizer

    def matcher(self, schema: str, prompt_len: int) -> Matcher:
        """A fresh Matcher for ``schema`` (a request's ``json_schema`` text); ValidationError
        naming response_format when llguidance cannot enforce it."""
        grammar = llguidance.LLMatcher.grammar_from_json_schema(parsed(schema))
        tokenizer = self.tokenizer()
        failed, warnings = llguidance.LLMatcher.validate_grammar_with_warnings(grammar, tokenizer)
        if failed:
            reason = "; ".join(str(w) for w in warnings) or "unsupported schema"
            raise ValidationError(
                "response_format: the JSON schema cannot be enforced by the transformers "
                f"engine: {reason}"[:500], details={"field": "json_schema"})  # fmt: skip
        return Matcher(llguidance.LLMatcher(tokenizer, grammar), self.vocab, prompt_len,
                       min(self.eos) if self.eos else int(self.hf.eos_token_id))  # fmt: skip


class Matcher:
    """One request's grammar state, as a ``model.generate`` logits processor: call it with the
    ids so far ([1, prompt + generated]) and the next token's scores ([1, vocab]); returns the
    scores with every token the schema forbids at -inf. Never shared between requests."""

    def __init__(self, matcher: Any, vocab: int, prompt_len: int, eos: int) -> None:
        self.matcher, self.vocab, self.prompt_len, self.eos = matcher, vocab, prompt_len, eos
        self.bitmask = llguidance.numpy.allocate_token_bitmask(1, vocab)
        self.consumed = 0

    def advance(self, ids: list[int], generated: bool = True) -> None:
        """Feed tokens: those generated since the last call, or (``generated`` False) a
        prefill's, which the prompt holds already: an answer continued after a failover
        stays inside the grammar. llguidance reads bytes, so any tokenization of them fits."""
        for token in ids:
            if not self.matcher.consume_token(token):
                raise RuntimeError(f"grammar rejected token {token}: {self.matcher.get_error()}")
        self.consumed += len(ids) if generated else 0

    def allowed(self) -> np.ndarray[Any, np.dtype[np.bool_]]:
        """A bool mask [vocab] of the tokens the schema allows next (only end-of-generation
        once the matcher has stopped: the JSON is complete)."""
        if self.matcher.is_stopped():
            only = np.zeros(self.vocab, dtype=bool)
            only[self.eos] = True
            return only
        # bit i of the little-endian 32-bit words = token i. Not llguidance.torch: importing it
        # takes ~14 s here (its kernel is torch.compile'd: a C++ toolchain at run time on CPU)
        llguidance.numpy.fill_next_token_bitmask(self.matcher, self.bitmask, 0)
        bits = np.unpackbits(self.bitmask.view(np.uint8), bitorder="little")
        return bits[: self.vocab].astype(bool)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        generated = input_ids[0, self.prompt_len + self.consumed :].tolist()
        self.advance([int(t) for t in generated])
        allowed = self.allowed()
        width = scores.shape[-1]
        if width > self.vocab:  # padded embedding rows beyond the tokenizer: never allowed
            allowed = np.concatenate([allowed, np.zeros(width - self.vocab, dtype=bool)])
        if scores.device.type == "cpu" and scores.dtype == torch.float32:
            # numpy: ~0.4 ms a token on a busy 2-core machine, torch's masked_fill ~7 ms
            out = torch.from_numpy(np.where(allowed[:width], scores.numpy(), np.float32("-inf")))
        else:
            mask = torch.from_numpy(allowed[:width]).to(scores.device)
            out = scores.masked_fill(~mask, float("-inf"))
        return out
