"""LocalBackend on the real default model: answers, limits, prefill, batching, cancellation."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from bridge.backends.engines import held_back
from bridge.backends.local import LocalBackend
from bridge.config import DEFAULT_MODEL_ID
from bridge.errors import ContextLengthExceeded, ModelNotFound, ValidationError
from bridge.models.store import ModelCorrupted, ModelStore
from bridge.types import Backend, Completion, Done, GenerateRequest, Message, Token, collect
from tests.support.model import tiny_model

pytestmark = pytest.mark.model
CAPITAL = "What is the capital of France?"


def ask(backend: LocalBackend, prompt: str = CAPITAL, **kwargs: Any) -> Completion:
    kwargs = {"model": DEFAULT_MODEL_ID, "temperature": 0.0, "max_tokens": 16, **kwargs}
    return collect(backend.generate(GenerateRequest(prompt=prompt, **kwargs)))


def test_is_a_backend(local_backend: LocalBackend) -> None:
    assert isinstance(local_backend, Backend)
    assert local_backend.name == "local"
    assert local_backend.ready()
    assert local_backend.loaded_models() == [DEFAULT_MODEL_ID]


def test_greedy_answer_names_paris(local_backend: LocalBackend) -> None:
    answer = ask(local_backend)
    assert "Paris" in answer.text
    assert "<|im_end|>" not in answer.text
    assert answer.done == Done(
        answer.done.prompt_tokens, answer.done.completion_tokens, "stop", backend="local",
        engine="transformers",
    )
    assert 0 < answer.done.completion_tokens <= 16
    assert answer.text == "".join(e.text for e in answer.events if isinstance(e, Token))


def test_chat_messages_use_the_template(local_backend: LocalBackend) -> None:
    messages = (
        Message("system", "You answer with one word."),
        Message("user", CAPITAL),
    )
    answer = ask(local_backend, "", messages=messages)
    assert "Paris" in answer.text


def test_stop_string_cuts_the_text(local_backend: LocalBackend) -> None:
    answer = ask(local_backend, stop=("Paris",))
    assert "Paris" not in answer.text
    assert answer.text.startswith("The capital of France is")
    assert answer.done.finish_reason == "stop"


def test_max_tokens_is_respected(local_backend: LocalBackend) -> None:
    answer = ask(local_backend, "Write a long poem about the sea.", max_tokens=5)
    assert answer.done.completion_tokens <= 5
    assert answer.done.finish_reason == "length"
    assert answer.text


def test_seeded_sampling_repeats_even_beside_other_streams(local_backend: LocalBackend) -> None:
    prompt = "Invent a name for a cat."
    first = ask(local_backend, prompt, temperature=0.9, seed=7, max_tokens=8)
    beside: list[Completion] = []
    greedy = threading.Thread(target=lambda: beside.append(ask(local_backend, max_tokens=12)))
    greedy.start()
    second = ask(local_backend, prompt, temperature=0.9, seed=7, max_tokens=8)
    greedy.join()
    assert first.text == second.text
    assert first.done.completion_tokens <= 8
    assert "Paris" in beside[0].text


def test_prefill_continues_without_repeating(local_backend: LocalBackend) -> None:
    answer = ask(local_backend, prefill="The capital of France is")
    assert "Paris" in answer.text
    assert not answer.text.startswith("The capital")


def test_a_long_prompt_is_refused_or_truncated_on_request(model_store: ModelStore) -> None:
    backend = LocalBackend(model_store, keep_alive=None, max_context=64, engine="transformers")
    try:
        with pytest.raises(ContextLengthExceeded) as refused:
            ask(backend, "blah " * 200 + CAPITAL, max_tokens=8)
        assert refused.value.details["context"] == 64
        request = GenerateRequest(DEFAULT_MODEL_ID, max_tokens=8, temperature=0, truncate=True,
                                  messages=(Message("system", "Be brief."),
                                            Message("user", "blah " * 200),
                                            Message("assistant", "Noted."),
                                            Message("user", CAPITAL)))
        answer = collect(backend.generate(request))
        assert answer.done.truncated_prompt and answer.done.prompt_tokens <= 56
        with pytest.raises(ValidationError, match="context"):
            ask(backend, max_tokens=64)
    finally:
        backend.close()
    assert backend.loaded_models() == []


def test_idle_model_is_unloaded_after_keep_alive(model_store: ModelStore) -> None:
    backend = LocalBackend(model_store, keep_alive=0, engine="transformers")
    try:
        assert "Paris" in ask(backend).text
        assert backend.loaded_models() == [DEFAULT_MODEL_ID]  # asking unloads nothing
        assert backend.unload_idle() == [DEFAULT_MODEL_ID]  # idle longer than 0 s
        assert backend.loaded_models() == []
    finally:
        backend.close()


def test_concurrent_requests_are_batched(local_backend: LocalBackend) -> None:
    manager = local_backend.manager(DEFAULT_MODEL_ID)
    start = threading.Barrier(2)
    answers: dict[int, Completion] = {}

    def run(i: int, prompt: str) -> None:
        start.wait()
        answers[i] = ask(local_backend, prompt, max_tokens=12)

    steps_before = getattr(manager, "current_batch", 0)  # set once its loop has started
    threads = [
        threading.Thread(target=run, args=(0, CAPITAL)),
        threading.Thread(target=run, args=(1, "Name three colors.")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    steps = manager.current_batch - steps_before
    tokens = sum(a.done.completion_tokens for a in answers.values())
    assert "Paris" in answers[0].text
    assert answers[1].text
    # A forward step yields at most one token per request: one after the other would take at
    # least as many steps as tokens; fewer steps than tokens means the requests shared steps.
    assert 0 < steps < tokens


def test_closing_a_stream_cancels_it_and_others_finish(local_backend: LocalBackend) -> None:
    long = local_backend.generate(
        GenerateRequest(model=DEFAULT_MODEL_ID, prompt="1, 2, 3, 4,", chat=False, max_tokens=2000)
    )
    assert isinstance(next(long), Token)
    other: list[Completion] = []
    thread = threading.Thread(target=lambda: other.append(ask(local_backend, max_tokens=8)))
    thread.start()
    long.close()
    thread.join()
    assert "Paris" in other[0].text
    scheduler = local_backend.manager(DEFAULT_MODEL_ID).batch_processor.scheduler
    deadline = time.monotonic() + 30  # an uncancelled 2000-token request would still be running
    while (scheduler.active_requests or scheduler.waiting_requests) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not scheduler.active_requests and not scheduler.waiting_requests


def test_count_tokens(local_backend: LocalBackend) -> None:
    assert local_backend.count_tokens(DEFAULT_MODEL_ID, "Hello world") == 2


def test_unknown_model_and_bad_requests(local_backend: LocalBackend) -> None:
    with pytest.raises(ModelNotFound):
        ask(local_backend, model="no-such-model")
    with pytest.raises(ValidationError):
        ask(local_backend, max_tokens=0)
    with pytest.raises(ValidationError):
        local_backend.load(DEFAULT_MODEL_ID, quantization="3bit")


@pytest.mark.parametrize("quantization", ["8bit", "4bit"])
def test_bitsandbytes_quantized_load_answers(model_store: ModelStore, quantization: str) -> None:
    # bitsandbytes and accelerate are installed by `make` (the `quant` extra); on CPU both
    # modes load and stay faithful on this prompt, slower than fp32 (see make bench).
    backend = LocalBackend(model_store, keep_alive=None, engine="transformers")
    try:
        assert backend.load(DEFAULT_MODEL_ID, quantization=quantization) > 0
        assert "Paris" in ask(backend).text
    finally:
        backend.close()


def test_held_back_guards_stop_prefixes_and_half_characters() -> None:
    assert held_back("Hello Pa", 0, ("Paris",)) == 2
    assert held_back("Hello", 0, ("Paris",)) == 0
    assert held_back("caf\ufffd", 0, ()) == 1


def _tiny_model(model_store: ModelStore, dest: Path) -> Path:
    source = model_store.get(DEFAULT_MODEL_ID).path
    assert source is not None
    return tiny_model(source, dest)


@pytest.mark.parametrize("damage", ["flip", "truncate", "config"])
def test_corrupt_model_folder_is_named_not_crashed(
    model_store: ModelStore, tmp_path: Path, damage: str
) -> None:
    store = ModelStore(tmp_path / "store")
    info = store.register("tiny", _tiny_model(model_store, tmp_path / "tiny"))
    assert info.path is not None
    backend = LocalBackend(store, keep_alive=None)
    try:
        assert backend.load("tiny") > 0  # intact: loads
        backend.unload("tiny")
        weights, config = info.path / "model.safetensors", info.path / "config.json"
        if damage == "flip":  # same size, garbage header
            weights.write_bytes(b"\xff" * 16 + weights.read_bytes()[16:])
        elif damage == "truncate":
            weights.write_bytes(weights.read_bytes()[:1000])
        else:
            config.write_text("{" + " " * (len(config.read_text()) - 1))
        with pytest.raises(ModelCorrupted) as caught:
            backend.load("tiny")
        assert caught.value.status == 503
        assert ("config.json" if damage == "config" else "model.safetensors") in str(caught.value)
        assert backend.loaded_models() == []
    finally:
        backend.close()
