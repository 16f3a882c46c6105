"""Workers behind a metered tunnel: ngrok's warning page is skipped on every request, and
health probes are spaced so a free plan's monthly quota lasts the month."""

from __future__ import annotations

import httpx

from bridge.backends.remote import NGROK_PROBE_SECONDS, RemoteBackend, tunnel_probe_interval
from bridge.router import Router
from tests.support.fakes import FakeBackend, FakeClock


def test_every_request_to_a_worker_skips_ngroks_warning_page() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"status": "ok", "service": "compute-bridge-worker",
                                         "models": [], "runtime_info": {}})

    worker = RemoteBackend("t4", "https://abc.ngrok-free.app", "s" * 32,
                           transport=httpx.MockTransport(answer))
    try:
        worker.probe()
    finally:
        worker.close()
    assert seen and all(r.headers.get("ngrok-skip-browser-warning") for r in seen)


def test_probe_spacing_follows_the_tunnel() -> None:
    assert tunnel_probe_interval("https://abc.ngrok-free.app") == NGROK_PROBE_SECONDS
    assert tunnel_probe_interval("https://x.eu.ngrok.io/") == NGROK_PROBE_SECONDS
    assert tunnel_probe_interval("http://10.0.0.5:8000") is None
    assert tunnel_probe_interval("https://ngrok-free.app.example.org") is None


def test_a_worker_behind_ngrok_is_probed_every_520_s_others_every_30_s() -> None:
    clock = FakeClock()
    router = Router(FakeBackend("local", kind="local"), probe_interval=30, clock=clock)
    lan, tunnel = FakeBackend("lan"), FakeBackend("colab")
    tunnel.probe_interval = NGROK_PROBE_SECONDS  # type: ignore[attr-defined]
    router.add_worker(lan)
    router.add_worker(tunnel)
    for _ in range(24):  # 12 minutes, a tick every 30 s
        router.probe_due()
        clock.advance(30)
    assert lan.probes == 24
    assert tunnel.probes == 2  # at 0 s and at 540 s (the first tick after 520 s)
