"""Routing decided in one place: preference, failover, circuit breaker, probing (fake backends)."""

from __future__ import annotations

import base64
import json
import logging
import socket
import threading
from collections.abc import Iterator

import httpx
import pytest

from bridge.backends.openai_compatible import OpenAIBackend
from bridge.backends.remote import RemoteBackend
from bridge.errors import BackendUnavailable, Conflict, ModelNotFound, NotFound
from bridge.router import Router
from bridge.types import BackendSwitched, Done, GenerateRequest, Token, collect
from bridge.urls import is_loopback, redact_url, split_userinfo
from tests.support.fakes import FakeBackend, FakeClock

ANSWER = "The capital of France is Paris, a city on the Seine."


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def local() -> FakeBackend:
    return FakeBackend("local", default=ANSWER, kind="local")


@pytest.fixture
def router(local: FakeBackend, clock: FakeClock) -> Iterator[Router]:
    router = Router(local, failure_threshold=2, cooldown=30, clock=clock)
    yield router
    router.close()


def ask(model: str = "smollm2", max_tokens: int = 64) -> GenerateRequest:
    return GenerateRequest(model=model, prompt="Capital of France?", max_tokens=max_tokens)


def test_without_workers_the_local_backend_answers(router: Router, local: FakeBackend) -> None:
    answer = collect(router.generate(ask()))
    assert answer.text == ANSWER
    assert answer.done.backend == "local"
    assert len(local.history) == 1


def test_a_healthy_worker_is_preferred(router: Router, local: FakeBackend) -> None:
    worker = FakeBackend("colab-t4", default="From the GPU.", models=["smollm2"])
    router.add_worker(worker)
    router.probe_all()
    answer = collect(router.generate(ask()))
    assert (answer.text, answer.done.backend) == ("From the GPU.", "colab-t4")
    assert local.history == []


def test_a_worker_without_the_model_is_skipped(router: Router, local: FakeBackend) -> None:
    worker = FakeBackend("colab-t4", models=["llama-3-8b"])
    router.add_worker(worker)
    router.probe_all()
    assert collect(router.generate(ask("smollm2"))).done.backend == "local"
    assert collect(router.generate(ask("llama-3-8b"))).done.backend == "colab-t4"


def test_the_worker_with_fewest_outstanding_requests_wins(router: Router) -> None:
    first, second = FakeBackend("w1"), FakeBackend("w2")
    router.add_worker(first)
    router.add_worker(second)
    held = router.generate(ask())
    assert isinstance(next(held), Token)  # w1 is now busy with one stream
    assert collect(router.generate(ask())).done.backend == "w2"
    assert collect(held).done.backend == "w1"
    assert [b["outstanding"] for b in router.backends()[1:]] == [0, 0]


def test_failure_before_the_first_token_is_retried_locally_and_invisibly(
    router: Router, local: FakeBackend
) -> None:
    worker = FakeBackend("colab-t4")
    worker.fail = BackendUnavailable("connection refused")
    router.add_worker(worker)
    answer = collect(router.generate(ask()))
    assert answer.text == ANSWER
    assert answer.done.backend == "local"
    assert not any(isinstance(e, BackendSwitched) for e in answer.events)
    assert local.history[0].prefill == ""


def test_a_worker_dying_mid_stream_is_continued_locally(router: Router, local: FakeBackend) -> None:
    worker = FakeBackend("colab-t4", default=ANSWER)
    worker.die_after = 3
    router.add_worker(worker)
    events = list(router.generate(ask(max_tokens=64)))
    switched = [e for e in events if isinstance(e, BackendSwitched)]
    assert len(switched) == 1
    assert (switched[0].from_backend, switched[0].to_backend) == ("colab-t4", "local")
    assert "died after 3 tokens" in switched[0].reason
    assert events.index(switched[0]) == 3  # after exactly the worker's three tokens
    answer = collect(events)
    assert answer.text == ANSWER
    assert local.history[0].prefill == "The capital of"
    assert local.history[0].max_tokens == 61
    assert answer.done.backend == "local"
    assert answer.done.completion_tokens == len(ANSWER.split())


def test_no_backend_at_all_is_backend_unavailable(clock: FakeClock) -> None:
    router = Router(None, clock=clock)
    with pytest.raises(BackendUnavailable, match="no worker attached"):
        list(router.generate(ask()))


def test_without_local_a_workers_own_error_reaches_the_client(clock: FakeClock) -> None:
    router = Router(None, clock=clock)
    worker = FakeBackend("colab-t4")
    worker.fail = ModelNotFound("no such model")
    router.add_worker(worker)
    with pytest.raises(ModelNotFound):
        list(router.generate(ask()))
    worker.fail, worker.die_after = None, 2
    stream = router.generate(ask())
    assert [next(stream), next(stream)] == [Token("Hello"), Token(" from")]
    with pytest.raises(BackendUnavailable, match="no local backend"):
        next(stream)


def test_the_circuit_opens_after_failures_and_closes_after_a_good_trial(
    router: Router, clock: FakeClock
) -> None:
    worker = FakeBackend("colab-t4")
    worker.fail = BackendUnavailable("connection refused")
    router.add_worker(worker)
    for _ in range(2):
        assert collect(router.generate(ask())).done.backend == "local"
    assert router.backends()[1]["circuit"] == "open"
    worker.fail = None
    assert collect(router.generate(ask())).done.backend == "local"
    assert len(worker.history) == 2  # open: not even tried
    clock.advance(30)
    assert router.backends()[1]["circuit"] == "half_open"
    assert collect(router.generate(ask())).done.backend == "colab-t4"
    status = router.backends()[1]
    assert (status["circuit"], status["healthy"]) == ("closed", True)


def test_a_failed_half_open_trial_opens_the_circuit_again(router: Router, clock: FakeClock) -> None:
    worker = FakeBackend("colab-t4")
    worker.fail = BackendUnavailable("down")
    router.add_worker(worker)
    for _ in range(2):
        collect(router.generate(ask()))
    clock.advance(30)
    collect(router.generate(ask()))
    assert len(worker.history) == 3
    assert router.backends()[1]["circuit"] == "open"


def test_a_workers_own_error_answer_does_not_open_the_circuit(router: Router) -> None:
    worker = FakeBackend("colab-t4")
    worker.fail = ModelNotFound("not loaded")
    router.add_worker(worker)
    for _ in range(3):
        assert collect(router.generate(ask())).done.backend == "local"
    assert router.backends()[1]["circuit"] == "closed"


def test_probes_drive_health(router: Router, clock: FakeClock) -> None:
    worker = FakeBackend("colab-t4", models=["smollm2"])
    router.add_worker(worker)
    worker.healthy = False
    router.probe_all()
    assert collect(router.generate(ask())).done.backend == "local"
    router.probe_all()
    assert router.backends()[1]["circuit"] == "open"
    worker.healthy = True
    router.probe_all()  # open circuit: not probed before the cooldown
    assert router.backends()[1]["healthy"] is False
    clock.advance(30)
    router.probe_all()
    status = router.backends()[1]
    assert (status["healthy"], status["circuit"], status["latency_ms"]) == (True, "closed", 1.0)
    assert collect(router.generate(ask())).done.backend == "colab-t4"


def test_a_client_that_goes_away_is_neither_success_nor_failure(router: Router) -> None:
    worker = FakeBackend("colab-t4")
    router.add_worker(worker)
    stream = router.generate(ask())
    next(stream)
    stream.close()
    status = router.backends()[1]
    assert (status["outstanding"], status["last_error"], status["circuit"]) == (0, "", "closed")


def test_backends_describes_every_backend(router: Router) -> None:
    router.add_worker(FakeBackend("colab-t4", models=["smollm2"]))
    router.probe_all()
    local, worker = router.backends()
    assert local["kind"] == "local" and "url" not in local
    assert {k: worker[k] for k in ("name", "kind", "url", "healthy", "models")} == {
        "name": "colab-t4",
        "kind": "worker",
        "url": "fake://colab-t4",
        "healthy": True,
        "models": ["smollm2"],
    }


def test_attach_and_detach(router: Router) -> None:
    worker = FakeBackend("colab-t4")
    router.add_worker(worker)
    with pytest.raises(Conflict):
        router.add_worker(FakeBackend("colab-t4"))
    router.remove_worker("colab-t4")
    assert worker.closed
    with pytest.raises(NotFound):
        router.remove_worker("colab-t4")


def test_the_probe_thread_runs_and_stops(local: FakeBackend) -> None:
    router = Router(local, probe_interval=60)
    worker = FakeBackend("colab-t4")
    router.add_worker(worker)
    router.start()
    assert worker.probed.wait(timeout=10)
    router.close()
    assert not any(t.name == "bridge-router-probe" for t in threading.enumerate())
    assert worker.closed


def sse(*chunks: dict[str, object]) -> bytes:
    lines = [f"data: {json.dumps(c)}\n\n" for c in chunks] + ["data: [DONE]\n\n"]
    return "".join(lines).encode()


def openai_server(seen: list[dict[str, object]]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization") != "Bearer sk-test":
            return httpx.Response(401, json={"error": {"message": "Incorrect API key"}})
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"object": "list", "data": [{"id": "qwen2.5"}]})
        body = json.loads(request.content)
        seen.append(body)
        if request.url.path == "/v1/completions":
            text = [{"choices": [{"index": 0, "text": w}]} for w in ("Paris", ".")]
            return httpx.Response(200, content=sse(*text))
        if body["model"] != "qwen2.5":
            return httpx.Response(404, json={"error": {"message": "model not found"}})
        chunks = [
            {"choices": [{"index": 0, "delta": {"role": "assistant"}}]},
            {"choices": [{"index": 0, "delta": {"content": "Bonjour"}}]},
            {"choices": [{"index": 0, "delta": {"content": " !"}, "finish_reason": "length"}]},
            {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}},
        ]
        return httpx.Response(
            200, content=sse(*chunks), headers={"content-type": "text/event-stream"}
        )

    return httpx.MockTransport(handle)


def test_an_openai_compatible_server_is_a_routable_backend(router: Router) -> None:
    seen: list[dict[str, object]] = []
    server = OpenAIBackend("vllm", "http://gpu-box:8000", "sk-test", transport=openai_server(seen))
    router.add_worker(server)
    router.probe_all()
    assert router.backends()[1]["kind"] == "openai"
    assert router.backends()[1]["models"] == ["qwen2.5"]
    answer = collect(router.generate(ask("qwen2.5", max_tokens=2)))
    assert answer.text == "Bonjour !"
    assert answer.done == Done(5, 2, "length", backend="vllm")
    assert seen[0]["messages"] == [{"role": "user", "content": "Capital of France?"}]
    assert (seen[0]["stream"], seen[0]["max_tokens"]) == (True, 2)
    assert collect(router.generate(ask("smollm2"))).done.backend == "local"


def test_openai_backend_errors_map_to_bridge_errors() -> None:
    backend = OpenAIBackend(
        "vllm", "http://gpu-box:8000/v1/", "sk-test", transport=openai_server([])
    )
    assert backend.url == "http://gpu-box:8000/v1"
    with pytest.raises(ModelNotFound):
        list(backend.generate(ask("missing")))
    refused = OpenAIBackend("vllm", "http://gpu-box:8000", "wrong", transport=openai_server([]))
    with pytest.raises(BackendUnavailable, match="refused the API key"):
        refused.probe()
    assert refused.ready() is False


def test_plain_prompts_use_completions_and_a_prefill_continues_the_prompt() -> None:
    seen: list[dict[str, object]] = []
    backend = OpenAIBackend(
        "llama.cpp", "http://box:8080", "sk-test", transport=openai_server(seen)
    )
    request = GenerateRequest("qwen2.5", prompt="The capital of France is", chat=False, prefill=" ")
    answer = collect(backend.generate(request))
    assert (answer.text, answer.done.completion_tokens) == ("Paris.", 2)
    assert seen[0]["prompt"] == "The capital of France is "


def test_url_helpers_keep_credentials_apart() -> None:
    url = "https://alice:p%40ss@gpu-box.example:8443/worker?token=t#f"
    assert redact_url(url) == "https://gpu-box.example:8443/worker"
    assert redact_url("http://[::1]:8080/") == "http://[::1]:8080/"
    assert split_userinfo(url) == ("https://gpu-box.example:8443/worker?token=t#f",
                                   ("alice", "p@ss"))
    assert split_userinfo("http://h:1/") == ("http://h:1/", None)
    assert [is_loopback(h) for h in ("localhost", "127.0.0.2", "::1", "[::1]", "10.0.0.1",
                                     "gpu-box", "")] == [True, True, True, True, False, False,
                                                         False]


def test_credentials_in_a_backend_url_never_reach_status_errors_or_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nobody listens here
    secret = "hunter2-in-the-url"
    router = Router(None, failure_threshold=1)
    router.add_worker(RemoteBackend("gpu", f"http://bob:{secret}@127.0.0.1:{port}", "k" * 20))
    router.add_worker(OpenAIBackend("vllm", f"http://bob:{secret}@127.0.0.1:{port}/v1"))
    try:
        router.probe_all()
        with pytest.raises(BackendUnavailable) as caught:
            collect(router.generate(ask()))
        shown = json.dumps(router.backends()) + caught.value.message + caplog.text
        assert secret not in shown and "bob" not in shown
        assert [b["url"] for b in router.backends()] == [
            f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}/v1"]
        assert all(b["last_error"] for b in router.backends())
    finally:
        router.close()


def test_basic_auth_from_the_url_is_sent_as_a_header() -> None:
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization", ""))
        return httpx.Response(200, json={"data": [{"id": "m"}]})

    backend = OpenAIBackend("vllm", "http://bob:pw@gpu-box:8000",
                            transport=httpx.MockTransport(handle))
    assert backend.probe()["models"] == ["m"] and backend.url == "http://gpu-box:8000/v1"
    assert seen == ["Basic " + base64.b64encode(b"bob:pw").decode()]
