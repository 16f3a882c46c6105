"""Router.embed: the same routing decision as a generation's (a healthy worker that lists
the model and embeds, else local), a worker's failure answered locally, a refusal kept."""

from __future__ import annotations

import httpx
import pytest

from bridge.embeddings import Embeddings, EmbedRequest
from bridge.errors import BackendUnavailable, ValidationError
from bridge.router import Router
from tests.support.fakes import FakeBackend


class EmbeddingFake(FakeBackend):
    """A FakeBackend that also embeds: vector [len(text), index] per input, and records."""

    def __init__(self, name: str, **kwargs: object) -> None:
        super().__init__(name, **kwargs)  # type: ignore[arg-type]
        self.embedded: list[EmbedRequest] = []

    def embed(self, request: EmbedRequest) -> Embeddings:
        self.embedded.append(request)
        if self.fail is not None:
            raise self.fail
        vectors = [[float(len(t)), float(i)] for i, t in enumerate(request.inputs)]
        return Embeddings(vectors, sum(len(t) for t in request.inputs), engine="fake")


REQUEST = EmbedRequest("minilm", ("ab", "cde"))


def test_a_worker_that_lists_the_model_embeds_it() -> None:
    local, worker = EmbeddingFake("local", kind="local"), EmbeddingFake("gpu", models=["minilm"])
    router = Router(local)
    router.add_worker(worker)
    router.probe_all()  # learns the models the worker lists
    answer = router.embed(REQUEST)
    assert (answer.backend, answer.vectors, answer.prompt_tokens) == (
        "gpu", [[2.0, 0.0], [3.0, 1.0]], 5)
    assert worker.embedded == [REQUEST] and local.embedded == []
    other = router.embed(EmbedRequest("other", ("x",)))  # not listed by the worker: local
    assert other.backend == "local" and len(local.embedded) == 1
    assert router.backends()[1]["outstanding"] == 0


def test_a_worker_without_embeddings_is_passed_over() -> None:
    local = EmbeddingFake("local", kind="local")
    router = Router(local)
    router.add_worker(FakeBackend("chat-only", models=["minilm"]))
    assert router.embed(REQUEST).backend == "local"


def test_a_failing_worker_is_answered_locally_and_a_refusal_is_not() -> None:
    local, worker = EmbeddingFake("local", kind="local"), EmbeddingFake("gpu", models=["minilm"])
    router = Router(local)
    router.add_worker(worker)
    worker.fail = BackendUnavailable("tunnel closed")
    assert router.embed(REQUEST).backend == "local"
    worker.fail = ValidationError("input[0] is too long")
    with pytest.raises(ValidationError):
        router.embed(REQUEST)
    assert len(local.embedded) == 1


def test_no_backend_that_embeds() -> None:
    with pytest.raises(BackendUnavailable, match="No backend can answer 'minilm'"):
        Router(FakeBackend("local", kind="local")).embed(REQUEST)


def test_through_a_real_worker_app_over_http() -> None:
    """RemoteBackend -> the worker app's signed POST /embed -> the worker's backend."""
    from bridge.backends.remote import RemoteBackend
    from colab_runtime.worker import WorkerServer, create_worker_app

    gpu = EmbeddingFake("gpu-engine", models=["minilm"])
    server = WorkerServer(create_worker_app(gpu, "s" * 32, runtime_info={})).start()
    try:
        remote = RemoteBackend("colab", server.url, "s" * 32)
        router = Router(EmbeddingFake("local", kind="local"))
        router.add_worker(remote)
        router.probe_all()
        answer = router.embed(REQUEST)
        assert (answer.backend, answer.vectors, answer.prompt_tokens) == (
            "colab", [[2.0, 0.0], [3.0, 1.0]], 5)
        assert gpu.embedded == [REQUEST]
        gpu.fail = ValidationError("input[0] is too long")
        with pytest.raises(ValidationError, match="too long"):
            router.embed(REQUEST)
        unsigned = httpx.post(f"{server.url}/embed", json=REQUEST.as_dict())
        assert unsigned.status_code == 401
        remote.close()
    finally:
        server.stop()
