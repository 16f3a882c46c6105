"""Prometheus /metrics, readiness and structured request logs, on the real app."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from bridge.config import DEFAULT_MODEL_ID
from bridge.models.store import ModelStore
from bridge.router import Router
from local_api import create_app, shutdown
from local_api.system import metrics
from tests.support.app import Auth
from tests.support.fakes import FakeBackend


def scrape(client: FlaskClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of /metrics, keyed by (name, labels)."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def local() -> FakeBackend:
    return FakeBackend("local", kind="local", models=[DEFAULT_MODEL_ID])


@pytest.fixture
def worker() -> FakeBackend:
    return FakeBackend("gpu-1", models=[DEFAULT_MODEL_ID])


@pytest.fixture
def app(app_config: dict[str, Any], local: FakeBackend, worker: FakeBackend,
        tmp_path: Path) -> Iterator[Flask]:
    router = Router(local)
    router.add_worker(worker)
    router.probe_all()
    application = create_app(
        app_config, router=router, local=local, store=ModelStore(tmp_path / "models")
    )
    yield application
    shutdown(application)


def test_requests_by_route_and_status_with_latency(client: FlaskClient) -> None:
    for _ in range(2):
        assert client.get("/api/v1/auth/session").status_code == 200
    assert client.get("/api/v1/conversations/abc").status_code == 401
    assert client.get("/no/such/thing").status_code == 404
    samples = scrape(client)
    route = "/api/v1/auth/session"
    assert value(samples, "bridge_http_requests_total", method="GET", route=route,
                 status="200") == 2
    assert value(samples, "bridge_http_requests_total", method="GET",
                 route="/api/v1/conversations/<conversation_id>", status="401") == 1
    # Unknown paths share one label value: a scanner cannot blow up the series count.
    assert value(samples, "bridge_http_requests_total", method="GET", route="unmatched",
                 status="404") == 1
    assert value(samples, "bridge_http_request_duration_seconds_count", method="GET",
                 route=route) == 2
    assert value(samples, "bridge_http_request_duration_seconds_sum", method="GET",
                 route=route) > 0


def test_tokens_fallbacks_and_cache_hits(client: FlaskClient, auth: Auth, worker: FakeBackend,
                                         local: FakeBackend) -> None:
    headers = auth.headers()
    worker.queue("one two three four five")
    worker.die_after = 2  # the worker dies mid-stream; local continues
    local.queue("one two three four five")
    body = {"model": DEFAULT_MODEL_ID, "prompt": "count", "parameters": {"temperature": 0}}
    first = client.post("/api/generate", headers=headers, json=body)
    assert first.status_code == 200 and first.headers["X-Cache"] == "MISS"
    assert first.get_json()["backend"] == "local"
    assert "cache" not in first.get_json()  # a failed-over answer is never cached
    worker.die_after = None
    worker.queue("one two three four five")
    whole = client.post("/api/generate", headers=headers, json=body)
    assert whole.headers["X-Cache"] == "MISS" and whole.get_json()["cache"]["status"] == "MISS"
    again = client.post("/api/generate", headers=headers, json=body)
    assert again.headers["X-Cache"] == "HIT"
    samples = scrape(client)
    assert value(samples, "bridge_backend_fallbacks_total", from_backend="gpu-1",
                 to_backend="local") == 1
    # 2 tokens came from the worker before it died, the answer reports all 5 as local's.
    assert value(samples, "bridge_tokens_generated_total", backend="local") == 5
    assert value(samples, "bridge_generations_total", backend="local") == 1  # the HIT: none
    assert value(samples, "bridge_answer_cache_total", result="MISS") == 2
    assert value(samples, "bridge_answer_cache_total", result="HIT") == 1
    assert value(samples, "bridge_backend_failovers_total", backend="gpu-1",
                 stage="mid_stream") == 1


def test_failover_before_the_first_token_is_counted(
    client: FlaskClient, auth: Auth, worker: FakeBackend, local: FakeBackend
) -> None:
    from bridge.errors import BackendUnavailable

    worker.fail = BackendUnavailable("the GPU fell over")
    local.queue("answered here")
    answer = client.post("/api/generate", headers=auth.headers(), json={
        "model": DEFAULT_MODEL_ID, "prompt": "hi"}).get_json()
    assert answer["backend"] == "local" and answer["response"] == "answered here"
    samples = scrape(client)
    assert value(samples, "bridge_backend_failovers_total", backend="gpu-1",
                 stage="before_first_token") == 1
    assert value(samples, "bridge_backend_failovers_total", backend="gpu-1",
                 stage="mid_stream") == 0
    assert value(samples, "bridge_backend_fallbacks_total", from_backend="gpu-1",
                 to_backend="local") == 0  # no switch inside a stream


def test_streamed_tokens_are_counted(client: FlaskClient, auth: Auth, worker: FakeBackend) -> None:
    worker.queue("alpha beta gamma")
    response = client.post("/api/v1/chat/completion", headers=auth.headers(),
                           json={"prompt": "hi", "stream": True})
    assert response.status_code == 200 and response.get_data()  # consume the stream
    samples = scrape(client)
    assert value(samples, "bridge_tokens_generated_total", backend="gpu-1") == 3


def test_worker_health_is_read_at_scrape_time(app: Flask, client: FlaskClient,
                                              worker: FakeBackend) -> None:
    samples = scrape(client)
    assert value(samples, "bridge_backend_healthy", backend="gpu-1", kind="worker") == 1
    assert value(samples, "bridge_backend_healthy", backend="local", kind="local") == 1
    assert value(samples, "bridge_backend_latency_seconds", backend="gpu-1") == 0.001
    worker.healthy = False
    app.extensions["compute"].router.probe_all()
    assert value(scrape(client), "bridge_backend_healthy", backend="gpu-1", kind="worker") == 0


def test_rate_limit_rejections_by_tier(make_app, home: Path) -> None:
    app = make_app({"home": home, "anonymous_limit": "2/minute"})
    client = app.test_client()
    statuses = [client.get("/api/v1/models").status_code for _ in range(4)]
    assert statuses.count(429) == 2
    assert value(scrape(client), "bridge_rate_limit_rejections_total", tier="anonymous") == 2


def test_each_app_has_its_own_registry(make_app, tmp_path: Path) -> None:
    first = make_app({"home": tmp_path / "a"}).test_client()
    second = make_app({"home": tmp_path / "b"}).test_client()
    first.get("/healthz")
    first.get("/healthz")
    assert value(scrape(first), "bridge_http_requests_total", method="GET", route="/healthz",
                 status="200") == 2
    assert value(scrape(second), "bridge_http_requests_total", method="GET", route="/healthz",
                 status="200") == 0


def test_readiness_says_whether_a_backend_can_answer(app: Flask, client: FlaskClient,
                                                     local: FakeBackend,
                                                     worker: FakeBackend) -> None:
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json()["can_generate"] is True and ready.get_json()["database"] is True
    local.healthy = worker.healthy = False
    app.extensions["compute"].router.probe_all()
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "not_ready" and body["can_generate"] is False
    assert {b["name"]: b["healthy"] for b in body["backends"]} == {"local": False, "gpu-1": False}
    assert client.get("/healthz").status_code == 200  # alive, just not ready


def test_access_log_carries_the_request_id(client: FlaskClient,
                                           caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="compute_bridge.access"):
        response = client.get("/api/v1/auth/session?token=secret-value",
                              headers={"X-Request-ID": "trace-abc-123"})
    assert response.headers["X-Request-ID"] == "trace-abc-123"
    lines = [r for r in caplog.records if r.name == "compute_bridge.access"]
    assert len(lines) == 1
    message = lines[0].getMessage()
    assert "request_id=trace-abc-123" in message and "status=200" in message
    assert "method=GET path=/api/v1/auth/session" in message
    assert "secret-value" not in message  # query strings (?token=) are never logged


def test_hostile_paths_and_methods_cannot_forge_log_lines_or_series(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="compute_bridge.access"):
        client.get("/api/v1/x%0a2026-01-01 INFO forged line%20")
        for n in range(3):
            client.open("/healthz", method=f"BREW{n}")
    message = next(r for r in caplog.records if r.name == "compute_bridge.access").getMessage()
    assert "\n" not in message and " forged" not in message
    assert "path=/api/v1/x%0A2026-01-01%20INFO%20forged%20line%20" in message
    samples = scrape(client)
    assert value(samples, "bridge_http_requests_total", method="OTHER", route="unmatched",
                 status="405") == 3  # one series for all three made-up methods


@pytest.fixture
def json_logs() -> Iterator[None]:
    logger = logging.getLogger("compute_bridge")
    handlers, propagate = list(logger.handlers), logger.propagate
    yield
    logger.handlers[:] = handlers
    logger.propagate = propagate


def test_json_log_lines(make_app, home: Path, json_logs: None) -> None:
    app = make_app({"home": home, "log_format": "json"})
    handler = next(h for h in logging.getLogger("compute_bridge").handlers
                   if isinstance(h.formatter, metrics.JsonFormatter))
    records: list[logging.LogRecord] = []
    handler.emit = records.append  # type: ignore[method-assign]
    client = app.test_client()
    client.get("/api/v1/nope", headers={"X-Request-ID": "json-trace-1"})
    line = json.loads(handler.format(records[-1]))
    assert line["logger"] == "compute_bridge.access" and line["level"] == "INFO"
    assert line["request_id"] == "json-trace-1" and line["status"] == 404
    assert line["route"] == "unmatched" and line["path"] == "/api/v1/nope"
