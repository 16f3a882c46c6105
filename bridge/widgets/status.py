"""StatusWidget: CPU, memory, GPU, models and backends (workers), refreshed every few seconds
by a background thread that stops on ``close()``."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

import ipywidgets as w

from bridge.sdk.client import Client
from bridge.sdk.types import SystemStatus, human_bytes
from bridge.widgets import text
from bridge.widgets.base import ERROR_STYLE, WIDE, BaseWidget, escape

_CELL = "<td style='padding:0 8px;vertical-align:top'>{}</td>"
HISTORY = 150  # samples kept for the plots (5 minutes at the default 2 s)


def _bar(description: str) -> Any:
    return w.FloatProgress(min=0.0, max=100.0, value=0.0, description=description,
                           bar_style="info", style=WIDE)


def sparkline(values: list[float], title: str, width: int = 180, height: int = 36, *,
              top: float | None = 100.0, unit: str = "%") -> str:
    """A small SVG plot over time, in the theme's brand colour: percentages (0-100), or any
    rate with ``top=None`` (scaled to its own maximum) and its ``unit``."""
    scale = top if top is not None else max([*values, 1e-9])
    if len(values) < 2:
        points = ""
    else:
        step = width / (len(values) - 1)
        points = " ".join(f"{i * step:.1f},{height - height * min(max(v, 0.0), scale) / scale:.1f}"
                          for i, v in enumerate(values))
    last = f"{values[-1]:.0f}{unit}" if values else "-"
    return (f"<div style='display:inline-block;margin-right:12px' title='{escape(title)}'>"
            f"<div style='font-size:11px;color:var(--jp-ui-font-color1)'>{escape(title)} "
            f"<b>{last}</b></div><svg width='{width}' height='{height}' "
            "style='background:var(--jp-layout-color2);border-radius:3px'>"
            f"<polyline fill='none' stroke='var(--jp-brand-color1,#1976d2)' stroke-width='1.5' "
            f"points='{points}'/></svg></div>")


class StatusWidget(BaseWidget):
    """The service's resources and compute at a glance; ``interval=0`` refreshes on click only."""

    def __init__(self, client: Client | None = None, *, interval: float = 2.0,
                 **client_options: Any) -> None:
        super().__init__(client, client_options)
        self.interval = interval
        self.refreshes = 0
        self.cpu, self.memory, self.gpu_memory = _bar("CPU"), _bar("Memory"), _bar("GPU mem")
        self.cpu_text, self.memory_text, self.gpu_text = w.HTML(), w.HTML(), w.HTML()
        self.plots = w.HTML()
        self.samples: dict[str, deque[float]] = {k: deque(maxlen=HISTORY)
                                                 for k in ("CPU", "Memory", "GPU")}
        # tokens/s per backend, from the change of its tokens_generated between refreshes
        self.rates: dict[str, deque[float]] = {}
        self._tokens: dict[str, tuple[float, int]] = {}
        self.models = w.HTML()
        self.backends = w.HTML()
        self.updated = w.HTML()
        self.auto = w.Checkbox(value=interval > 0, description="auto-refresh", indent=False,
                                style=WIDE)
        self.refresh_button = w.Button(description="Refresh", icon="refresh")
        self.on_click(self.refresh_button, self.refresh)
        self.auto.observe(lambda change: self.guard(self._toggle, change["new"]), "value")
        self.widget = w.VBox([
            w.HBox([self.refresh_button, self.auto, self.updated]),
            w.HBox([self.cpu, self.cpu_text]), w.HBox([self.memory, self.memory_text]),
            w.HBox([self.gpu_memory, self.gpu_text]), self.plots, self.models, self.backends,
            self.error,
        ])
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self.client is not None:
            self.refresh()
            if interval > 0:
                self.start()

    @property
    def running(self) -> bool:
        """True while the refresh thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Refresh every ``interval`` seconds in a background thread."""
        if self.running or self._closed.is_set():
            return
        self.interval = self.interval if self.interval > 0 else 2.0
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="bridge-status")
        self._thread.start()

    def stop(self) -> None:
        """Stop refreshing (the thread ends within one request)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self.interval + 35)
        self._thread = None

    def close(self) -> None:
        self.stop()
        super().close()

    def _toggle(self, on: bool) -> None:
        self.start() if on else self.stop()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.refresh()

    def refresh(self) -> None:
        """Read ``/system/status`` once and show it; an error is shown and the loop goes on
        (a service that restarts is picked up again, and the widget says it reconnected)."""
        if not self.guard(self._refresh):
            self._lost = True
            self.updated.value = (f"<small>no answer at {time.strftime('%H:%M:%S')}"
                                  f"{' · retrying' if self.running else ''}</small>")

    def _refresh(self) -> bool:
        status = self.sdk.system.status()
        self.show(status)
        self.refreshes += 1
        again = " · reconnected" if getattr(self, "_lost", False) else ""
        self._lost = False
        self.updated.value = (f"<small>{escape(status.status)} · {time.strftime('%H:%M:%S')}"
                              f"{again}</small>")
        self.clear_error()
        return True

    def show(self, status: SystemStatus) -> None:
        res: dict[str, Any] = status.resources or {}
        cpu, memory, gpu = res.get("cpu") or {}, res.get("memory") or {}, res.get("gpu")
        self.cpu.value = float(cpu.get("usage") or 0.0)
        temp = f", {cpu['temperature']} °C" if cpu.get("temperature") is not None else ""
        self.cpu_text.value = escape(f"{cpu.get('usage', '?')}% of {cpu.get('cores', '?')} "
                                     f"cores{temp}")
        used, total = memory.get("used") or 0, memory.get("total") or 0
        self.memory.value = 100.0 * used / total if total else 0.0
        self.memory_text.value = escape(f"{human_bytes(used)} of {human_bytes(total)}")
        if gpu:
            g_used, g_total = gpu.get("memory_used") or 0, gpu.get("memory_total") or 0
            self.gpu_memory.value = 100.0 * g_used / g_total if g_total else 0.0
            load = f", {gpu['usage']}% busy" if gpu.get("usage") is not None else ""
            self.gpu_text.value = escape(f"{gpu.get('name', 'GPU')}: {human_bytes(g_used)} of "
                                         f"{human_bytes(g_total)}{load}")
        else:
            self.gpu_memory.value = 0.0
            self.gpu_text.value = "no GPU on the service's machine (attach a worker for one)"
        self._plot(float(cpu.get("usage") or 0.0), float(self.memory.value),
                   float(self.gpu_memory.value) if gpu else None)
        models: dict[str, Any] = status.models or {}
        self.models.value = (
            f"<b>Loaded</b>: {escape(', '.join(models.get('loaded') or []) or '-')} · "
            f"<b>Stored</b>: {escape(', '.join(models.get('cached') or []) or '-')}")
        self.backends.value = self._backends(status.backends or [])
        self._plot_rates(status.backends or [])

    def _plot(self, cpu: float, memory: float, gpu: float | None) -> None:
        """CPU, memory and GPU memory over the last minutes."""
        self.samples["CPU"].append(cpu)
        self.samples["Memory"].append(memory)
        if gpu is not None:
            self.samples["GPU"].append(gpu)
        self.plots.value = "".join(sparkline(list(v), k) for k, v in self.samples.items() if v)

    def _plot_rates(self, backends: list[Any]) -> None:
        """Tokens/s per backend over the last minutes (the change between two refreshes)."""
        now = time.monotonic()
        for b in backends:
            name, total = str(b.get("name")), b.get("tokens_generated")
            if not isinstance(total, int):
                continue
            before = self._tokens.get(name)
            self._tokens[name] = (now, total)
            if before is not None and now > before[0]:
                rate = max(0, total - before[1]) / (now - before[0])
                self.rates.setdefault(name, deque(maxlen=HISTORY)).append(rate)
        self.plots.value = "".join(
            [sparkline(list(v), k) for k, v in self.samples.items() if v]
            + [sparkline(list(v), f"tokens/s {k}", top=None, unit=" tok/s")
               for k, v in self.rates.items() if v])

    @staticmethod
    def _backends(backends: list[Any]) -> str:
        head = "".join(_CELL.format(f"<b>{h}</b>") for h in
                       ("backend", "kind", "healthy", "latency", "runtime", "models"))
        rows = [f"<tr>{head}</tr>"]
        for b in backends:
            info = b.get("runtime_info") or {}
            latency = b.get("latency_ms")
            runtime = " ".join(str(info[k]) for k in ("type", "gpu") if info.get(k)) or "-"
            left = text.iso_seconds(b.get("time_left"))  # Colab's runtime limit, ISO 8601
            if left is not None:
                runtime += f", {text.clock(left)} left"
            cells = (b.get("name"), b.get("kind"), "yes" if b.get("healthy") else "no",
                     f"{latency:.0f} ms" if isinstance(latency, int | float) else "-",
                     runtime, ", ".join(b.get("models") or []) or "-")
            rows.append("<tr>" + "".join(_CELL.format(escape(c)) for c in cells) + "</tr>")
            why = [f"at {b['url']}" if b.get("url") else "",
                   f"last error: {b['last_error']}" if b.get("last_error") else ""]
            if not b.get("healthy") or b.get("last_error"):
                line = " · ".join(x for x in why if x) or "no answer to its health check yet"
                rows.append(f"<tr><td></td><td colspan='5' style='{ERROR_STYLE};"
                            f"font-weight:normal'>{escape(line)}</td></tr>")
        return f"<table>{''.join(rows)}</table>"
