"""Constrained decoding on the transformers engine (llguidance) with the real default model:
answers match their schema, a cut says ``length``, a schema the library cannot enforce is a
400-class error naming response_format, and concurrent constrained requests never share a
grammar state."""

from __future__ import annotations

import json
import threading
from typing import Any

import jsonschema
import pytest

from bridge.backends.local import LocalBackend
from bridge.config import DEFAULT_MODEL_ID
from bridge.errors import ValidationError
from bridge.types import Completion, GenerateRequest, Message, collect

pytestmark = pytest.mark.model

VERDICT = {"type": "object", "additionalProperties": False, "required": ["answer", "sure"],
           "properties": {"answer": {"enum": ["yes", "no"]}, "sure": {"type": "boolean"}}}
COLOR = {"type": "object", "additionalProperties": False, "required": ["color"],
         "properties": {"color": {"type": "string", "maxLength": 12}}}
COUNT = {"type": "object", "additionalProperties": False, "required": ["n"],
         "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 99}}}  # fmt: skip


def ask(backend: LocalBackend, schema: dict[str, Any] | None, question: str,
        **kwargs: Any) -> Completion:  # fmt: skip
    knobs = {"temperature": 0.0, "max_tokens": 24, **kwargs}
    request = GenerateRequest(DEFAULT_MODEL_ID, messages=(Message("user", question),),
                              json_schema=json.dumps(schema) if schema else "", **knobs)
    return collect(backend.generate(request))


def test_the_answer_matches_the_schema(local_backend: LocalBackend) -> None:
    answer = ask(local_backend, VERDICT, "Is water wet? Answer as JSON.")
    assert answer.done.finish_reason == "stop", answer.text
    jsonschema.validate(json.loads(answer.text), VERDICT)
    assert answer.done.engine == "transformers"
    sampled = ask(local_backend, COUNT, "Pick a number as JSON.", temperature=1.0, seed=3)
    assert sampled.done.finish_reason == "stop", sampled.text
    jsonschema.validate(json.loads(sampled.text), COUNT)


def test_a_cut_inside_the_json_says_length(local_backend: LocalBackend) -> None:
    answer = ask(local_backend, COLOR, "Name a colour as JSON.", max_tokens=3)
    assert answer.done.finish_reason == "length" and answer.done.completion_tokens == 3
    with pytest.raises(ValueError):
        json.loads(answer.text)  # the prefix of an object, never presented as complete


def test_an_unenforceable_schema_is_refused_by_name(local_backend: LocalBackend) -> None:
    for schema in ({"not": {"type": "string"}},
                   {"type": "string", "pattern": "^(?=a)b$"}):  # look-around: no regular grammar
        with pytest.raises(ValidationError, match="response_format") as caught:
            ask(local_backend, schema, "x")
        assert caught.value.status == 400 and caught.value.details == {"field": "json_schema"}


def test_concurrent_requests_keep_their_own_grammar(local_backend: LocalBackend) -> None:
    """Constrained requests of three schemas beside a plain one, all at once: each answer
    matches its own schema and equals its answer alone (greedy)."""
    jobs = [(VERDICT, "Is the sky blue? Answer as JSON."), (COLOR, "Name a colour as JSON."),
            (COUNT, "How many legs has a cat? As JSON."), (None, "Name a fruit.")]  # fmt: skip
    alone = [ask(local_backend, schema, question).text for schema, question in jobs]
    together: dict[int, list[Completion]] = {i: [] for i in range(len(jobs))}
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            together[index].append(ask(local_backend, *jobs[index]))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs)) for _ in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert not errors, errors
    for index, (schema, _question) in enumerate(jobs):
        assert [c.text for c in together[index]] == [alone[index]] * 2
        if schema is not None:
            jsonschema.validate(json.loads(alone[index]), schema)


def test_a_transformers_worker_honours_the_schema(local_backend: LocalBackend) -> None:
    """The schema travels the signed wire to a worker running transformers (the GPU worker's
    engine), which constrains its answer; a schema it cannot enforce is the request's 400,
    neither failed over nor counted against the worker."""
    from bridge.backends.remote import RemoteBackend
    from bridge.router import Router
    from colab_runtime.worker import WorkerServer, create_worker_app

    secret = "s" * 32
    server = WorkerServer(create_worker_app(local_backend, secret)).start()
    remote = RemoteBackend("gpu", server.url, secret, read_timeout=600)
    router = Router(None)
    try:
        router.add_worker(remote)
        request = GenerateRequest(DEFAULT_MODEL_ID, temperature=0.0, max_tokens=40,
                                  messages=(Message("user", "Is ice cold? Answer as JSON."),),
                                  json_schema=json.dumps(VERDICT))  # fmt: skip
        answer = collect(router.generate(request))
        assert answer.done.backend == "gpu" and answer.done.finish_reason == "stop"
        jsonschema.validate(json.loads(answer.text), VERDICT)
        with pytest.raises(ValidationError, match="response_format"):
            collect(router.generate(GenerateRequest(DEFAULT_MODEL_ID, prompt="x",
                                                    json_schema='{"not":{}}')))  # fmt: skip
        status = router.backends()[0]
        assert not status["last_error"] and status["failovers"]["before_first_token"] == 0
    finally:
        router.close()
        remote.close()
        server.stop()


def test_a_continued_answer_stays_in_the_grammar(local_backend: LocalBackend) -> None:
    """A failover continues an answer from its prefill: the grammar starts after it."""
    answer = ask(local_backend, VERDICT, "Is fire hot? Answer as JSON.", prefill='{"answer": "')
    assert answer.done.finish_reason == "stop", answer.text
    jsonschema.validate(json.loads('{"answer": "' + answer.text), VERDICT)
