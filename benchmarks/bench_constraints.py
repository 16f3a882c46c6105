"""Constrained decoding on the transformers engine (issue 20): the four candidate libraries
(llguidance, xgrammar, outlines-core, lm-format-enforcer) on the real default model, each as
a logits processor in ``model.generate`` (the path constrained requests take), greedy, one
schema. Prints per library: tokenizer set-up (once per model), schema compile (once per
request), grammar time per token (mask + advance), and tokens/s against the same path
unconstrained; then the engine itself (llguidance) through LocalBackend. Libraries not
installed are reported, not skipped silently: ``pip install xgrammar outlines-core
lm-format-enforcer`` to compare them all (only llguidance is a dependency)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import torch

from bridge.backends.local import LocalBackend
from bridge.config import DEFAULT_MODEL_ID
from bridge.models.store import ModelStore
from bridge.types import GenerateRequest, Message, collect

TOKENS = 24
SCHEMA = {"type": "object", "additionalProperties": False,
          "required": ["name", "country", "population_millions", "landmarks"],
          "properties": {"name": {"type": "string"}, "country": {"type": "string"},
                         "population_millions": {"type": "number"},
                         "landmarks": {"type": "array", "items": {"type": "string"}}}}  # fmt: skip
PROMPT = "Describe Paris as JSON."


def _llguidance(tokenizer: Any, vocab: int) -> tuple[Any, Callable[[], Any]]:
    from bridge.backends.engines.constraints import Grammars

    grammars = Grammars(tokenizer, vocab, frozenset([tokenizer.eos_token_id]))
    grammars.tokenizer()
    # _run hands the processor the ids from the last prompt token on
    return grammars, lambda: grammars.matcher(json.dumps(SCHEMA), 1)


def _xgrammar(tokenizer: Any, vocab: int) -> tuple[Any, Callable[[], Any]]:
    import xgrammar as xgr

    compiler = xgr.GrammarCompiler(xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab))

    def build() -> Any:
        matcher = xgr.GrammarMatcher(compiler.compile_json_schema(json.dumps(SCHEMA)))
        mask, seen = xgr.allocate_token_bitmask(1, vocab), [0]

        def step(ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
            for token in ids[0, seen[0]:].tolist() if seen[0] else ():
                matcher.accept_token(token)
            seen[0] = ids.shape[1]
            matcher.fill_next_token_bitmask(mask)
            xgr.apply_token_bitmask_inplace(scores, mask)
            return scores

        return step

    return compiler, build


def _outlines_core(tokenizer: Any, vocab: int) -> tuple[Any, Callable[[], Any]]:
    from outlines_core import Guide, Index, Vocabulary
    from outlines_core.json_schema import build_regex_from_schema
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    unicode_to_byte = {v: k for k, v in bytes_to_unicode().items()}
    pieces: dict[bytes, list[int]] = {}
    for text, index in tokenizer.get_vocab().items():
        if index != tokenizer.eos_token_id and all(c in unicode_to_byte for c in text):
            pieces.setdefault(bytes(unicode_to_byte[c] for c in text), []).append(index)
    vocabulary = Vocabulary(tokenizer.eos_token_id, pieces)

    def build() -> Any:
        guide, seen = Guide(Index(build_regex_from_schema(json.dumps(SCHEMA)), vocabulary)), [0]

        def step(ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
            for token in ids[0, seen[0]:].tolist() if seen[0] else ():
                guide.advance(token)
            seen[0] = ids.shape[1]
            allowed = torch.zeros(scores.shape[-1], dtype=torch.bool)
            allowed[guide.get_tokens()] = True
            return scores.masked_fill(~allowed, float("-inf"))

        return step

    return vocabulary, build


def _lm_format_enforcer(tokenizer: Any, vocab: int) -> tuple[Any, Callable[[], Any]]:
    from lmformatenforcer import JsonSchemaParser
    from lmformatenforcer.integrations.transformers import (
        build_transformers_prefix_allowed_tokens_fn,
    )

    def build() -> Any:
        parser = JsonSchemaParser(SCHEMA)
        allowed_of = build_transformers_prefix_allowed_tokens_fn(tokenizer, parser)

        def step(ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
            allowed = torch.zeros(scores.shape[-1], dtype=torch.bool)
            allowed[allowed_of(0, ids[0])] = True
            return scores.masked_fill(~allowed, float("-inf"))

        return step

    return None, build


LIBRARIES = {"llguidance": _llguidance, "xgrammar": _xgrammar, "outlines-core": _outlines_core,
             "lm-format-enforcer": _lm_format_enforcer}  # fmt: skip


def _run(model: Any, ids: torch.Tensor, step: Any) -> tuple[str, int, float, float]:
    """Greedy through model.generate with ``step`` as the processor: (text ids, tokens, seconds,
    seconds inside the processor)."""
    spent = [0.0]

    def timed(input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        started = time.perf_counter()
        out = step(input_ids[:, ids.shape[1] - 1 :], scores) if step else scores
        spent[0] += time.perf_counter() - started
        return out

    started = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                             max_new_tokens=TOKENS, logits_processor=[timed])  # fmt: skip
    new = out[0, ids.shape[1] :].tolist()
    return json.dumps(new), len(new), time.perf_counter() - started, spent[0]


def main() -> None:
    with TemporaryDirectory() as home:
        backend = LocalBackend(ModelStore(Path(home)), keep_alive=None, engine="transformers")
        backend.load(DEFAULT_MODEL_ID)
        engine: Any = backend._slots[DEFAULT_MODEL_ID].engine
        model, tokenizer = engine.slot.model, engine.slot.tokenizer
        prompt = engine.template([{"role": "user", "content": PROMPT}])
        ids = torch.tensor([engine.tokenize(prompt)])
        engine.gate.enter("solo")  # the model is this benchmark's alone while it runs
        try:
            _, n, seconds, _ = _run(model, ids, None)
            print(f"unconstrained: {n / seconds:.1f} tok/s ({n} tokens)")
            for name, setup in LIBRARIES.items():
                try:
                    started = time.perf_counter()
                    _, build = setup(tokenizer, engine.vocab)
                    ready = time.perf_counter()
                    step = build()
                    compiled = time.perf_counter()
                except Exception as exc:  # not installed, or broken with this transformers
                    print(f"{name}: unavailable ({type(exc).__name__}: {exc})"[:200])
                    continue
                _, n, seconds, inside = _run(model, ids, step)
                print(f"{name}: tokenizer set-up {ready - started:.2f} s, schema compile "
                      f"{1000 * (compiled - ready):.1f} ms, grammar {1000 * inside / n:.2f} "
                      f"ms/token, {n / seconds:.1f} tok/s ({n} tokens)")  # fmt: skip
        finally:
            engine.gate.leave()
        request = GenerateRequest(DEFAULT_MODEL_ID, messages=(Message("user", PROMPT),),
                                  max_tokens=200, temperature=0, json_schema=json.dumps(SCHEMA))
        started = time.perf_counter()
        answer = collect(backend.generate(request))
        seconds = time.perf_counter() - started
        print(f"engine (llguidance), whole request: {answer.done.completion_tokens} tokens in "
              f"{seconds:.1f} s, finish {answer.done.finish_reason}: {answer.text[:80]!r}")
        backend.close()
