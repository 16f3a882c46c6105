"""GET /system/status: CPU, memory, GPU, models and backends (AQ's shape, plus backends)."""

from __future__ import annotations

from typing import Any

import psutil
from flask import Blueprint

from bridge.router import models_of
from bridge.urls import redact_url
from local_api.accounts.identity import login_required
from local_api.docs import spec
from local_api.generation.compute import compute
from local_api.system.metrics import tokens_by_backend

bp = Blueprint("system", __name__, url_prefix="/system")


def _temperature() -> float | None:
    reader = getattr(psutil, "sensors_temperatures", None)
    if reader is None:
        return None
    try:
        sensors = reader()
    except OSError:
        return None
    readings = [t.current for entries in sensors.values() for t in entries if t.current]
    return round(max(readings), 1) if readings else None


def gpu() -> dict[str, Any] | None:
    """The first CUDA device's use and memory, or None without one."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    free, total = torch.cuda.mem_get_info(0)
    usage: float | None
    try:
        usage = float(torch.cuda.utilization(0))
    except Exception:  # needs NVML (pynvml); memory figures still stand
        usage = None
    return {
        "name": torch.cuda.get_device_name(0),
        "usage": usage,
        "memory_used": int(total - free),
        "memory_total": int(total),
    }


def resources() -> dict[str, Any]:
    memory = psutil.virtual_memory()
    return {
        "cpu": {
            "usage": psutil.cpu_percent(interval=None),
            "temperature": _temperature(),
            "cores": psutil.cpu_count(),
        },
        "memory": {"total": memory.total, "used": memory.used, "free": memory.available},
        "gpu": gpu(),
    }


def _remote_details(backends: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each attached worker with AQ's runtime_info and its time left (Colab; else null)."""
    from local_api.remote.attach import summary
    from local_api.remote.workers import remote

    registry = remote()
    for entry in backends:
        if entry.get("kind") == "local":
            continue
        raw = entry.get("runtime_info") or {}
        entry["runtime_info"] = {**summary(raw), "details": raw}
        entry["url"] = redact_url(entry["url"]) if entry.get("url") else None
        entry.update(registry.describe(entry["name"]))
    return backends


def snapshot() -> dict[str, Any]:
    c = compute()
    loaded = models_of(c.local) if c.local is not None else []
    backends = _remote_details(c.router.backends())
    generated = tokens_by_backend()
    for entry in backends:  # a client divides the change by its interval: tokens/s
        entry["tokens_generated"] = int(generated.get(entry["name"], 0))
    healthy = any(b.get("healthy") for b in backends)
    return {
        "status": "ok" if healthy else "degraded",
        "resources": resources(),
        "models": {
            "loaded": loaded,
            "cached": [m.id for m in c.store.list() if m.status == "ready"],
        },
        "backends": backends,
        "lost": _lost(),
    }


def _lost() -> list[dict[str, Any]]:
    """Colab runtimes Colab took back (reclaimed, capped, restarted), newest last, and why."""
    from local_api.remote.workers import remote

    return remote().lost.items()


@bp.get("/status")
@spec("Resources, models and backends")
@login_required
def status() -> dict[str, Any]:
    return snapshot()
