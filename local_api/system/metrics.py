"""Prometheus /metrics (one registry per app) and one structured log line per request."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from flask import Flask, Response, current_app, g, has_app_context, has_request_context, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bridge.config import Settings
from bridge.errors import ValidationError
from bridge.types import BackendSwitched, Done
from local_api.docs import spec
from local_api.errors import request_id

access_log = logging.getLogger("compute_bridge.access")
# Seconds; generation answers take seconds, cheap routes a few milliseconds.
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    """The app's collectors, all in its own registry (apps in one process never collide)."""

    def __init__(self, app: Flask) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "bridge_http_requests", "HTTP requests answered", ["method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "bridge_http_request_duration_seconds",
            "Time to the response headers (the whole answer unless streamed)",
            ["method", "route"], buckets=_BUCKETS, registry=r,
        )
        self.tokens = Counter(
            "bridge_tokens_generated", "Completion tokens generated", ["backend"], registry=r
        )
        self.generations = Counter(
            "bridge_generations", "Generations finished", ["backend"], registry=r
        )
        self.embeddings = Counter(
            "bridge_embeddings", "Embedding requests answered", ["backend"], registry=r)
        self.embedded = Counter(
            "bridge_embedding_tokens", "Input tokens embedded", ["backend"], registry=r)
        self.fallbacks = Counter(
            "bridge_backend_fallbacks", "Streams moved to another backend mid-answer",
            ["from_backend", "to_backend"], registry=r,
        )
        self.rate_limited = Counter(
            "bridge_rate_limit_rejections", "Requests refused by a rate limit", ["tier"], registry=r
        )
        self.cache = Counter(
            "bridge_answer_cache", "Generation answers by cache result (X-Cache)", ["result"],
            registry=r,
        )
        self.backups = Counter(
            "bridge_backups", "Database backups and restores", ["action", "outcome"], registry=r
        )
        r.register(_BackendCollector(app))


class _BackendCollector(Collector):
    """Worker health, read from the router at scrape time."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def describe(self) -> list[Any]:
        return []  # dynamic: never collected at registration

    def collect(self) -> Iterator[Metric]:
        compute = self.app.extensions.get("compute")
        healthy = GaugeMetricFamily(
            "bridge_backend_healthy", "1 when the backend can answer", labels=["backend", "kind"]
        )
        latency = GaugeMetricFamily(
            "bridge_backend_latency_seconds", "Last probe round trip", labels=["backend"]
        )
        outstanding = GaugeMetricFamily(
            "bridge_backend_outstanding", "Requests in flight on a worker", labels=["backend"]
        )
        failovers = CounterMetricFamily(
            "bridge_backend_failovers",
            "Requests a worker failed that the local backend answered, by stage",
            labels=["backend", "stage"],
        )
        backends = compute.router.backends() if compute is not None else []
        for entry in backends:
            name = str(entry["name"])
            healthy.add_metric([name, str(entry.get("kind", ""))], 1.0 if entry["healthy"] else 0.0)
            if entry.get("latency_ms") is not None:
                latency.add_metric([name], float(entry["latency_ms"]) / 1000)
            if "outstanding" in entry:
                outstanding.add_metric([name], float(entry["outstanding"]))
            for stage, count in (entry.get("failovers") or {}).items():
                failovers.add_metric([name, stage], float(count))
        lost = CounterMetricFamily(
            "bridge_colab_runtimes_lost", "Colab runtimes Colab took back, by reason",
            labels=["reason"],
        )
        registry = self.app.extensions.get("remote")
        for reason, count in (registry.lost.counts.items() if registry is not None else ()):
            lost.add_metric([reason], float(count))
        yield from (healthy, latency, outstanding, failovers, lost)
        yield from _engine_queues(compute)


def tokens_by_backend() -> dict[str, float]:
    """Completion tokens generated since start, per backend (this instance's counter)."""
    found = metrics()
    if found is None:
        return {}
    return {sample.labels["backend"]: sample.value
            for family in found.tokens.collect() for sample in family.samples
            if sample.name.endswith("_total")}


def _engine_queues(compute: Any) -> Iterator[Metric]:
    """Each llama-server: slots, slots decoding now, requests waiting for a slot (read from its
    own /metrics: llamacpp:requests_processing, llamacpp:requests_deferred); engine restarts."""
    local = getattr(compute, "local", None)
    info = getattr(local, "runtime_info", None) or {}
    servers = info.get("llama_servers") or {}
    slots = GaugeMetricFamily("bridge_engine_slots", "llama.cpp slots (parallel sequences) "
                              "per loaded model", labels=["model"])  # fmt: skip
    busy = GaugeMetricFamily("bridge_engine_slots_busy", "llama.cpp slots decoding now",
                             labels=["model"])  # fmt: skip
    depth = GaugeMetricFamily("bridge_engine_queue_depth",
                              "Requests waiting for a free llama.cpp slot", labels=["model"])
    restarts = CounterMetricFamily("bridge_engine_restarts", "Engine processes that died "
                                   "(crash, OOM-kill) and were restarted", labels=["model"])
    for model, stats in servers.items():
        slots.add_metric([model], float(stats["parallel"]))
        busy.add_metric([model], float(stats.get("processing", 0)))
        depth.add_metric([model], float(stats.get("deferred", 0)))
    counts: dict[str, int] = {}
    for fault in getattr(local, "faults", None) or []:
        counts[fault["model"]] = counts.get(fault["model"], 0) + 1
    for model, count in counts.items():
        restarts.add_metric([model], float(count))
    yield from (slots, busy, depth, restarts)


def metrics(app: Flask | None = None) -> Metrics | None:
    """The app's metrics (None outside an app, e.g. a backend used by a script)."""
    if app is None:
        if not has_app_context():
            return None
        app = current_app
    return app.extensions.get("metrics")


def observe(event: object) -> None:
    """Count one routed generation event (inference.events calls this for every surface)."""
    found = metrics()
    if found is None:
        return
    if isinstance(event, Done):
        found.tokens.labels(event.backend or "unknown").inc(event.completion_tokens)
        found.generations.labels(event.backend or "unknown").inc()
    elif isinstance(event, BackendSwitched):
        found.fallbacks.labels(event.from_backend, event.to_backend).inc()


def observe_embeddings(backend: str, tokens: int) -> None:
    """Count one answered embedding request and the tokens it read."""
    found = metrics()
    if found is not None:
        found.embeddings.labels(backend or "unknown").inc()
        found.embedded.labels(backend or "unknown").inc(tokens)


def count_rate_limited(tier: str) -> None:
    """limits.py calls this when a limit refuses a request."""
    found = metrics()
    if found is not None:
        found.rate_limited.labels(tier).inc()


def count_backup(action: str, outcome: str) -> None:
    found = metrics()
    if found is not None:
        found.backups.labels(action, outcome).inc()


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):  # an access line: the fields say it all
            entry["message"] = f"{fields.get('method')} {fields.get('path')} {fields.get('status')}"
            entry.update(fields)
        elif has_request_context():
            entry["request_id"] = request_id()
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def _install_json_logs() -> None:
    """Send compute_bridge.* logs to stderr as JSON lines (once per process)."""
    logger = logging.getLogger("compute_bridge")
    if any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        return
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.propagate = False


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _route() -> str:
    rule = request.url_rule
    return rule.rule if rule is not None else "unmatched"  # unmatched: bounded label values


def _method() -> str:
    return request.method if request.method in _METHODS else "OTHER"  # bounded, as above


def _clean(path: str) -> str:
    """The path as one log token: no spaces, newlines or other control characters."""
    return quote(path, safe="/:@!$&'()*+,;=-._~%")


def _access_line(response: Response, route: str, elapsed: float) -> None:
    who = g.get("identity")
    fields = {
        "request_id": request_id(),
        "method": _method(),
        "path": _clean(request.path),  # never the query string: ?token= on /ws is a credential
        "route": route,
        "status": response.status_code,
        "duration_ms": round(elapsed * 1000, 1),
        "user_id": who.user_id if who is not None else None,
        "remote_addr": request.remote_addr,
    }
    text = " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
    access_log.info(text, extra={"fields": fields})


def init_app(app: Flask) -> None:
    """Wire metrics and request logging into ``app``."""
    settings: Settings = app.config["SETTINGS"]
    log_format = settings.log_format.lower()
    if log_format not in ("text", "json"):
        raise ValidationError(f"BRIDGE_LOG_FORMAT={settings.log_format!r}: use text or json",
                              details={"setting": "log_format"})
    app.extensions["metrics"] = found = Metrics(app)
    if log_format == "json":
        _install_json_logs()

    @app.before_request
    def _start() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def _count(response: Response) -> Response:
        started = g.get("started")
        elapsed = time.perf_counter() - started if started is not None else 0.0
        route, method = _route(), _method()
        found.requests.labels(method, route, str(response.status_code)).inc()
        found.latency.labels(method, route).observe(elapsed)
        cache = response.headers.get("X-Cache")
        if cache:
            found.cache.labels(cache.upper()).inc()
        _access_line(response, route, elapsed)
        return response

    @app.get("/metrics")
    @spec("Prometheus metrics (text exposition format)", auth="none")
    def prometheus_metrics() -> Response:
        return Response(generate_latest(found.registry), content_type=CONTENT_TYPE_LATEST)
