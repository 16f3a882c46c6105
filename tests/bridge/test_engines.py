"""Both local engines on the real default model: llama.cpp straight from the packaged GGUF,
and the stress test of issue 12 (every greedy or seeded answer under concurrency, beside
cancellations and a second model loading and unloading, equals its answer alone)."""

from __future__ import annotations

import queue
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from bridge.backends.engines import choose_engine, gguf_in
from bridge.backends.local import LocalBackend
from bridge.config import DEFAULT_MODEL_ID
from bridge.errors import ContextLengthExceeded, NotSupported
from bridge.models.convert import find_default_gguf
from bridge.models.store import ModelStore
from bridge.types import Completion, GenerateRequest, Token, collect
from tests.support.model import tiny_model

pytestmark = pytest.mark.model
CAPITAL = "What is the capital of France?"


def request(**kwargs: Any) -> GenerateRequest:
    return GenerateRequest(**{"model": DEFAULT_MODEL_ID, "prompt": CAPITAL, "temperature": 0.0,
                              "max_tokens": 16, **kwargs})  # fmt: skip


def ask(backend: LocalBackend, **kwargs: Any) -> Completion:
    return collect(backend.generate(request(**kwargs)))


def test_llama_cpp_serves_the_default_model_from_its_gguf(llama_backend: LocalBackend) -> None:
    assert llama_backend.engine_of(DEFAULT_MODEL_ID) == "llama.cpp"
    assert not llama_backend.store.is_complete(DEFAULT_MODEL_ID)  # no conversion happened
    answer = ask(llama_backend, prompt="The capital of France is", chat=False, max_tokens=8)
    assert "Paris" in answer.text
    assert answer.done.engine == "llama.cpp" and answer.done.backend == "local"
    assert 0 < answer.done.completion_tokens <= 8
    info = llama_backend.runtime_info
    assert info["engines"] == {DEFAULT_MODEL_ID: "llama.cpp"}
    assert info["llama_cpp"] == {"available": True, "reason": None}


def test_llama_cpp_limits_stops_and_seeds(llama_backend: LocalBackend) -> None:
    plain = {"prompt": "The capital of France is", "chat": False}
    cut = ask(llama_backend, **plain, stop=("Paris",))
    assert "Paris" not in cut.text and cut.done.finish_reason == "stop"
    short = ask(llama_backend, prompt="Write a long poem about the sea.", max_tokens=5)
    assert short.done.completion_tokens == 5 and short.done.finish_reason == "length"
    seeded = [ask(llama_backend, prompt="Invent a name for a cat.", temperature=1.0, seed=s,
                  max_tokens=8).text for s in (7, 7, 8)]  # fmt: skip
    assert seeded[0] == seeded[1] and seeded[0] != seeded[2]
    assert llama_backend.count_tokens(DEFAULT_MODEL_ID, "Hello world") == 2
    with pytest.raises(ContextLengthExceeded):
        ask(llama_backend, max_tokens=5000)


@pytest.fixture(params=["local_backend", "llama_backend"])
def engine_backend(request: pytest.FixtureRequest) -> LocalBackend:
    backend: LocalBackend = request.getfixturevalue(request.param)
    return backend


def test_penalties_mean_the_same_on_both_engines(engine_backend: LocalBackend) -> None:
    prompt = {"prompt": "1, 1, 1, 1, 1, 1, 1, 1,", "chat": False, "max_tokens": 12}
    looping = ask(engine_backend, **prompt).text
    penalised = ask(engine_backend, **prompt, repetition_penalty=1.5, frequency_penalty=1.0,
                    presence_penalty=1.0).text  # fmt: skip
    # seen on both engines: " 1, 1, 1, 1," and " 1,\n- The first two numbers are the same"
    assert looping.count("1") >= 4
    assert penalised.count("1") < looping.count("1")


def test_engine_choice_follows_format_device_and_override(tmp_path: Path) -> None:
    assert choose_engine("auto", "cpu", has_gguf=True) == "llama.cpp"
    assert choose_engine("auto", "cuda", has_gguf=True) == "transformers"
    assert choose_engine("auto", "cpu", has_gguf=False) == "transformers"
    assert choose_engine("transformers", "cpu", has_gguf=True) == "transformers"
    with pytest.raises(NotSupported, match="GGUF"):
        choose_engine("llama.cpp", "cpu", has_gguf=False)
    with pytest.raises(NotSupported, match="Unknown engine"):
        choose_engine("vllm", "cpu", has_gguf=True)
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    assert gguf_in(tmp_path) == tmp_path / "m.gguf"
    (tmp_path / "config.json").write_text("{}")
    assert gguf_in(tmp_path) is None  # an HF folder that also carries a GGUF is HF


# The stress mix: (name, request, checked against its solo answer).
MIX: list[tuple[str, dict[str, Any], bool]] = [
    ("greedy-chat", {}, True),
    ("greedy-chat-2", {}, True),
    ("greedy-plain", {"prompt": "The capital of France is", "chat": False}, True),
    ("greedy-colors", {"prompt": "Name three colors."}, True),
    ("greedy-stop", {"stop": ("Paris", ".")}, True),
    ("greedy-stop-plain", {"prompt": "1, 2, 3, 4,", "chat": False, "stop": (" 7",)}, True),
    ("seeded-cat", {"prompt": "Invent a name for a cat.", "temperature": 0.9, "seed": 7}, True),
    ("seeded-word", {"prompt": "Write a word.", "temperature": 1.0, "seed": 11}, True),
    ("seeded-cold", {"prompt": "The capital of France is", "chat": False, "temperature": 0.01,
                     "seed": 5}, True),
    ("penalised", {"prompt": "Write a short poem.", "repetition_penalty": 1.3}, True),
    ("sampled-1", {"temperature": 0.8}, False),
    ("sampled-2", {"prompt": "Name an animal.", "temperature": 0.8, "top_p": 0.9}, False),
    ("sampled-3", {"prompt": "Write a word.", "temperature": 1.0, "top_k": 40}, False),
    ("cancel-1", {"prompt": "1, 2, 3, 4,", "chat": False}, False),
    ("cancel-2", {"prompt": "Write a long poem.", "temperature": 0.8}, False),
    ("cancel-3", {"prompt": "Tell me a story.", "temperature": 0.9, "seed": 3}, False),
]


def _second_model(backend: LocalBackend, tmp_path: Path, model_store: ModelStore) -> str:
    """A second model in the backend's store: a copy of the GGUF (llama.cpp) or a tiny HF one."""
    if backend.engine == "llama.cpp":
        folder = tmp_path / "gguf"
        folder.mkdir()
        shutil.copy(find_default_gguf(), folder / "second.gguf")
    else:
        source = model_store.get(DEFAULT_MODEL_ID).path
        assert source is not None
        folder = tiny_model(source, tmp_path / "tiny")
    backend.store.register("stress-second", folder)
    return "stress-second"


def test_stress_every_deterministic_answer_equals_its_solo_answer(
    engine_backend: LocalBackend, tmp_path: Path, model_store: ModelStore
) -> None:
    backend = engine_backend
    second = _second_model(backend, tmp_path, model_store)
    solo = {name: ask(backend, max_tokens=16, **kw).text for name, kw, checked in MIX if checked}
    assert "Paris" in solo["greedy-plain"] and solo["greedy-chat"] == solo["greedy-chat-2"]
    start, done = threading.Barrier(len(MIX) + 1), threading.Event()
    answers: dict[str, str] = {}
    errors: queue.Queue[BaseException] = queue.Queue()

    def run(name: str, kwargs: dict[str, Any]) -> None:
        try:
            start.wait()
            events = backend.generate(request(max_tokens=16, **kwargs))
            if name.startswith("cancel"):
                assert isinstance(next(events), Token)
                events.close()  # the client went away after the first token
                return
            answers[name] = collect(events).text
        except BaseException as exc:
            errors.put(exc)

    def churn() -> None:
        try:
            start.wait()
            for _ in range(3):
                backend.load(second)
                backend.unload(second)
                if done.is_set():
                    break
        except BaseException as exc:
            errors.put(exc)

    threads = [threading.Thread(target=run, args=(n, kw)) for n, kw, _ in MIX]
    threads.append(threading.Thread(target=churn))
    try:
        for thread in threads:
            thread.start()
        for thread in threads[:-1]:
            thread.join(timeout=600)
        done.set()
        threads[-1].join(timeout=120)
        assert errors.empty(), errors.get()
        assert {n: answers[n] for n in solo} == solo
        assert all(answers[n] for n, _, checked in MIX if not checked and n in answers)
        assert backend.loaded_models() == [DEFAULT_MODEL_ID]
        assert ask(backend, **MIX[8][1], max_tokens=16).text == solo["seeded-cold"]  # still sane
    finally:
        backend.unload(second)
        backend.store.remove(second)
