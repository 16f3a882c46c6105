"""A real JupyterLab on a free loopback port and Debian's Chromium driven by Playwright, for
the browser tests (they skip, saying why, only where Chromium is absent).

Chromium is never downloaded (`playwright install` cannot reach the network here): Playwright
drives /usr/bin/chromium (`make browser-tests` installs it with apt-get).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
LIGHT, DARK = "JupyterLab Light", "JupyterLab Dark"


def missing() -> str | None:
    """Why the browser tests cannot run here (None when they can)."""
    if not os.path.exists(CHROMIUM):
        return "Chromium is not installed (run `make browser-tests`, which apt-gets it as root)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (`make install` installs the dev extra)"
    return None


def artifacts() -> Path:
    """Where screenshots go: $BRIDGE_ARTIFACTS, else build/screenshots (git-ignored)."""
    folder = Path(os.environ.get("BRIDGE_ARTIFACTS") or ROOT / "build" / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class JupyterLab:
    """``jupyter lab`` on loopback with a token, rooted in ``root``; stopped on exit."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root, self.port, self.token = root, free_port(), secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env, "JUPYTER_CONFIG_DIR": str(root / ".jupyter"),
                    "JUPYTER_RUNTIME_DIR": str(root / ".runtime")}
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> JupyterLab:
        # every cell rendered (no windowing: a person scrolls, the test reads the page), no
        # news prompt over the notebook
        settings = self.root / ".settings"
        for name, value in (("notebook-extension/tracker", {"windowingMode": "none"}),
                            ("apputils-extension/notification", {"fetchNews": "false"})):
            path = settings / "@jupyterlab" / f"{name}.jupyterlab-settings"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(value))
        self.log = log = (self.root / "jupyterlab.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
             "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}",
             "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
             f"--ServerApp.root_dir={self.root}", "--LabApp.expose_app_in_browser=True",
             f"--LabApp.workspaces_dir={self.root / '.workspaces'}",
             f"--LabApp.user_settings_dir={settings}",
             "--LabApp.news_url=", "--LabApp.check_for_updates_class="
             "jupyterlab.NeverCheckForUpdate"],
            stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/api/status?token={self.token}", timeout=2) \
                        .status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None:
                break
            time.sleep(0.5)
        self.__exit__()
        raise RuntimeError("JupyterLab did not start: "
                           + (self.root / "jupyterlab.log").read_text()[-2000:])

    def __exit__(self, *_exc: Any) -> None:
        process, self.process = self.process, None
        try:
            self._stop(process)
        finally:
            self.log.close()

    @staticmethod
    def _stop(process: subprocess.Popen[bytes] | None) -> None:
        if process is None or process.poll() is not None:
            return
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(process.pid, sig)
                if sig == signal.SIGINT:  # jupyter asks to confirm a first ^C
                    time.sleep(0.3)
                    os.killpg(process.pid, sig)
                process.wait(10)
                return
            except (subprocess.TimeoutExpired, ProcessLookupError):
                continue

    def open(self, notebook: str) -> str:
        return f"{self.url}/lab/tree/{notebook}?token={self.token}&reset"


@contextmanager
def browser() -> Iterator[Any]:
    """A headless Chromium page (1280x1000) from Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as play:
        chrome = play.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = chrome.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(60_000)
        try:
            yield page
        finally:
            chrome.close()


def run_all(page: Any, timeout: float = 240.0) -> None:
    """Run every cell of the open notebook and wait until none is running."""
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                           " && window.jupyterapp.shell.currentWidget.sessionContext &&"
                           " window.jupyterapp.shell.currentWidget.sessionContext.session"
                           " && window.jupyterapp.shell.currentWidget.sessionContext.session"
                           ".kernel.status === 'idle'", timeout=120_000)
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    page.wait_for_timeout(1000)
    page.wait_for_function(
        "() => ![...document.querySelectorAll('.jp-InputPrompt')].some(p => "
        "p.textContent.includes('*')) && window.jupyterapp.shell.currentWidget.sessionContext"
        ".session.kernel.status === 'idle'", timeout=timeout * 1000)


def theme(page: Any, name: str) -> None:
    page.evaluate(f"() => window.jupyterapp.commands.execute('apputils:change-theme', "
                  f"{{theme: '{name}'}})")
    page.wait_for_function(f"() => document.body.dataset.jpThemeName === '{name}'")
    page.wait_for_timeout(500)


_RGB = re.compile(r"rgba?\(([\d.]+),\s*([\d.]+),\s*([\d.]+)(?:,\s*([\d.]+))?\)")


def _luminance(rgb: tuple[float, float, float]) -> float:
    def channel(c: float) -> float:
        c /= 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (channel(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(foreground: str, background: str) -> float:
    """WCAG contrast ratio of two CSS colours (the foreground's alpha blended onto the
    background, which must be opaque)."""
    fg, bg = _RGB.match(foreground), _RGB.match(background)
    assert fg and bg, (foreground, background)
    back = tuple(float(x) for x in bg.groups()[:3])
    alpha = float(fg.group(4)) if fg.group(4) is not None else 1.0
    front = tuple(alpha * float(f) + (1 - alpha) * b for f, b in zip(fg.groups()[:3], back,
                                                                      strict=True))
    light, dark = sorted((_luminance(front), _luminance(back)), reverse=True)  # type: ignore[arg-type]
    return (light + 0.05) / (dark + 0.05)


# The colours a person sees: the element's text colour, and the first opaque background
# behind it (walking up the page).
COLOURS_JS = """(selector) => {
  const el = document.querySelector(selector);
  if (!el) return null;
  let bg = null, node = el;
  while (node) {
    const c = getComputedStyle(node).backgroundColor;
    if (c && c !== 'transparent' && !/rgba\\(.*,\\s*0\\)$/.test(c)) { bg = c; break; }
    node = node.parentElement;
  }
  return [getComputedStyle(el).color, bg || 'rgb(255, 255, 255)'];
}"""


def colours(page: Any, selector: str) -> tuple[str, str]:
    found = page.evaluate(COLOURS_JS, selector)
    assert found, f"nothing on the page matches {selector}"
    return found[0], found[1]
