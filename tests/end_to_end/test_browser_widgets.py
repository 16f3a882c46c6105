"""The widgets as a person sees them: JupyterLab on loopback, the quickstart and a widgets
notebook opened in headless Chromium, cells run, widgets used by clicking and typing, with
screenshots saved (tests/support/browser.py says where) and assertions on what is shown.
The last test is a newcomer's first hour end to end: `bridge serve` as `make run` starts it
(a fresh data directory, the real default model), the README's `bridge user create` and
`bridge login`, then the quickstart notebook run in the browser until the model answers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from flask import Flask

from bridge import Client
from bridge.models.store import ModelStore
from bridge.router import Router
from tests.support import browser as b
from tests.support.app import LiveServer
from tests.support.fakes import LocalFake
from tests.support.hub_standin import HubStandin
from tests.support.live_process import BRIDGE, serve

pytestmark = pytest.mark.skipif(b.missing() is not None, reason=str(b.missing()))
ANSWER = "Here is **bold** text and code:\n\n```python\nprint('hi')\n```\n\nDone."


@pytest.fixture
def lab(make_app: Callable[..., Flask], home: Path, tmp_path: Path,
        hub: HubStandin) -> Iterator[tuple[b.JupyterLab, LocalFake]]:
    """The service (a fake local backend) on loopback, and JupyterLab whose kernels find it
    through BRIDGE_URL / BRIDGE_API_KEY, as a user's would."""
    hub.add_repo("HuggingFaceTB/SmolLM2-360M-Instruct", {
        "config.json": b'{"model_type": "llama"}', "model.safetensors": os.urandom(3_000_000)})
    hub.delay = 0.02
    fake = LocalFake(loaded=True)
    app = make_app({"home": home, "hf_endpoint": hub.url, "download_timeout": 10,
                    "ratelimit_enabled": False}, router=Router(fake), local=fake,
                   store=ModelStore(tmp_path / "models"))
    root = tmp_path / "lab"
    root.mkdir()
    with LiveServer(app) as server, Client(server.url) as admin:
        admin.auth.login_or_register("owner", "correct horse", email="owner@example.org")
        key = admin.auth.create_api_key("lab").key
        env = {"BRIDGE_URL": server.url, "BRIDGE_API_KEY": key,
               "XDG_CONFIG_HOME": str(tmp_path / "config"),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(b.ROOT),
                                                           os.environ.get("PYTHONPATH")]))}
        with b.JupyterLab(root, env) as jupyter:
            yield jupyter, fake
    fake.release()


def widgets_notebook(path: Path) -> None:
    cells = ["import bridge\nclient = bridge.Client()  # BRIDGE_URL and BRIDGE_API_KEY",
             "chat = bridge.ChatWidget(client)\nchat",
             "models = bridge.ModelsWidget(client, poll_interval=0.1)\nmodels",
             "status = bridge.StatusWidget(client, interval=1)\nstatus"]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    path.write_text(nbformat.writes(notebook))


def shot(page: Any, name: str, selector: str | None = None) -> Path:
    path = b.artifacts() / f"{name}.png"
    target = page.locator(selector).first if selector else page
    target.screenshot(path=str(path))
    return path


def assert_readable(page: Any, selector: str, minimum: float = 4.5) -> float:
    front, back = b.colours(page, selector)
    ratio = b.contrast(front, back)
    assert ratio >= minimum, f"{selector}: {front} on {back} is {ratio:.2f}:1"
    return ratio


def test_widgets_in_jupyterlab_light_and_dark(lab: tuple[b.JupyterLab, LocalFake]) -> None:
    jupyter, fake = lab
    widgets_notebook(jupyter.root / "widgets.ipynb")
    with b.browser() as page:
        page.goto(jupyter.open("widgets.ipynb"))
        b.run_all(page)
        page.wait_for_selector(".bridge-chat .bridge-chat-input textarea")
        assert "Error displaying widget" not in page.inner_text("body")
        # chat: type, press Enter (Shift+Enter is a newline), watch the answer stream in
        fake.queue(ANSWER)
        box = page.locator(".bridge-chat-input textarea")
        box.click()
        box.type("Show me")
        box.press("Shift+Enter")
        box.type("some code")
        assert box.input_value() == "Show me\nsome code"
        page.wait_for_timeout(300)  # let the typed value reach the kernel
        box.press("Enter")
        page.wait_for_selector(".bridge-assistant .bridge-code", timeout=30_000)
        assert box.input_value() == ""
        you = page.inner_text(".bridge-user")
        assert "Show me" in you and "some code" in you
        answer = page.inner_text(".bridge-assistant")
        assert "bold" in answer and "**" not in answer and "print('hi')" in answer
        assert page.locator(".bridge-assistant strong").count() == 1
        assert page.locator(".bridge-assistant .bridge-badge").inner_text() == "local"
        font = page.evaluate("() => getComputedStyle(document.querySelector("
                             "'.bridge-assistant .bridge-code')).fontFamily")
        assert "mono" in font.lower() or "courier" in font.lower(), font
        page.locator(".bridge-send").click()  # empty prompt: the error line
        page.wait_for_selector("text=Type a message first.")
        ratios = {}
        for name in (b.LIGHT, b.DARK):
            b.theme(page, name)
            ratios[name] = [assert_readable(page, ".bridge-assistant .bridge-md p"),
                            assert_readable(page, ".bridge-user .bridge-md p"),
                            assert_readable(page, ".bridge-chat .bridge-error"),
                            assert_readable(page, ".bridge-chat .bridge-badge")]
            shot(page, f"chat-{name.split()[-1].lower()}", ".bridge-chat")
        b.theme(page, b.LIGHT)
        # models: press Download, the bar moves, the row ends ready with its size
        row = page.locator(".widget-hbox", has_text="smollm2-360m-instruct").last
        row.get_by_role("button", name="Download").click()
        widths: list[str] = []
        for _ in range(100):
            widths.append(row.locator(".progress-bar").evaluate("e => e.style.width")
                          if row.locator(".progress-bar").count() else "")
            if "Load" in row.inner_text():
                break
            page.wait_for_timeout(100)
        moved = {w for w in widths if w and w not in ("0%", "100%")}
        assert moved, widths
        assert "Load" in row.inner_text() and "ready" in row.inner_text()
        assert "PT" not in row.inner_text()
        shot(page, "models", ".jp-Cell:nth-child(3)")
        # a download that fails says why; Retry visibly acts: "Retrying…" (disabled), then
        # the failure marked with its attempt and time (the hub stand-in has no such repo)
        failing = page.locator(".widget-hbox", has_text="qwen2.5-0.5b-instruct").last
        failing.get_by_role("button", name="Download").click()
        failing.get_by_role("button", name="Retry").wait_for()
        failing.evaluate("row => { window.bridgeSeen = []; new MutationObserver(() => "
                         "window.bridgeSeen.push(row.innerText)).observe(row, {subtree: true,"
                         " childList: true, characterData: true, attributes: true}); }")
        failing.get_by_role("button", name="Retry").click()
        page.wait_for_function("() => window.bridgeSeen.some(t => /attempt 2 at "
                               "\\d\\d:\\d\\d:\\d\\d/.test(t))")
        assert any("Retrying…" in seen and "attempt 2)" in seen
                   for seen in page.evaluate("() => window.bridgeSeen"))
        assert failing.get_by_role("button", name="Retry").is_enabled()
        assert "failed again (attempt 2 at" in page.inner_text(".jp-Cell:nth-child(3)")
        # status: numbers, plots, the backend table
        status = page.locator(".jp-Cell").nth(3)
        assert "cores" in status.inner_text() and "local" in status.inner_text()
        assert status.locator("svg polyline").count() >= 2
        shot(page, "status", ".jp-Cell:nth-child(4)")
        shot(page, "widgets-page")
        assert "Error displaying widget" not in page.inner_text("body")
    assert min(min(r) for r in ratios.values()) >= 4.5


def test_quickstart_in_jupyterlab(lab: tuple[b.JupyterLab, LocalFake]) -> None:
    jupyter, _fake = lab
    shutil.copy(b.ROOT / "notebooks" / "quickstart.ipynb", jupyter.root / "quickstart.ipynb")
    with b.browser() as page:
        page.goto(jupyter.open("quickstart.ipynb"))
        b.run_all(page, timeout=300)
        page.wait_for_selector(".bridge-chat .bridge-assistant")
        text = page.inner_text("body")
        assert "Error displaying widget" not in text and "Traceback" not in text
        assert "already running" in text and "'username': 'owner'" in text
        assert "Name three colours." in page.inner_text(".bridge-user")
        assert "100%" in page.inner_text(".jp-Notebook")
        shot(page, "quickstart")
    saved = json.loads((jupyter.root / "quickstart.ipynb").read_text())
    assert saved["cells"]  # the notebook is still there and valid


@pytest.mark.model
def test_make_run_to_an_answer_in_the_quickstart(tmp_path: Path, hub: HubStandin,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """README path: `make run` (here `bridge serve` on a free port, a fresh BRIDGE_HOME, the
    default model), `bridge user create` + `bridge login`, open the quickstart, run it all,
    then chat in the widget by typing."""
    for name in ("BRIDGE_URL", "BRIDGE_API_KEY"):  # the notebook finds the `bridge login`
        monkeypatch.delenv(name, raising=False)
    hub.add_repo("HuggingFaceTB/SmolLM2-360M-Instruct", {  # the notebook's download, offline
        "config.json": b'{"model_type": "llama"}', "model.safetensors": os.urandom(500_000)})
    home, root = tmp_path / "home", tmp_path / "lab"
    root.mkdir()
    shutil.copy(b.ROOT / "notebooks" / "quickstart.ipynb", root / "quickstart.ipynb")
    # one machine's user: the CLI stores its login where the notebook's kernel looks for it
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config"), "HF_ENDPOINT": hub.url,
           "BRIDGE_KEEP_ALIVE": "300",  # `make run`'s default (the helper's is 0)
           "PYTHONPATH": os.pathsep.join(filter(None, [str(b.ROOT),
                                                       os.environ.get("PYTHONPATH")]))}
    with serve(home, "--host", "127.0.0.1", env=env) as (_process, url):
        cli_env = {**os.environ, **env, "BRIDGE_HOME": str(home)}
        for command in (["user", "create", "alice", "--email", "alice@example.org"],
                        ["login", "--url", url, "--username", "alice"]):
            done = subprocess.run([BRIDGE, *command, "--password-stdin"], env=cli_env,
                                  input="correct horse", capture_output=True, text=True,
                                  timeout=120)
            assert done.returncode == 0, done.stdout + done.stderr
        with b.JupyterLab(root, env) as jupyter, b.browser() as page:
            page.goto(jupyter.open("quickstart.ipynb"))
            b.run_all(page, timeout=420)
            page.wait_for_selector(".bridge-chat .bridge-assistant .bridge-md")
            text = page.inner_text("body")
            assert "Error displaying widget" not in text and "Traceback" not in text
            assert f"Service('{url}', already running)" in text and "'username': 'alice'" in text
            assert "backend: local" in text  # the SDK cell's answer came from this machine
            chat = page.locator(".bridge-chat")
            assert "Name three colours." in chat.locator(".bridge-user").inner_text()
            answer = chat.locator(".bridge-assistant .bridge-md").inner_text().strip()
            assert len(answer.split()) >= 2, answer  # generated words, shown in the widget
            assert chat.locator(".bridge-assistant .bridge-badge").inner_text() == "local"
            assert chat.locator(".bridge-error").count() == 0  # no error line
            assert "100%" in page.inner_text(".jp-Notebook")  # the download cell's bar
            shot(page, "first-answer")
            # then as a person would: New chat, type the README's first prompt, press Enter
            chat.get_by_role("button", name="New chat").click()
            page.wait_for_function("() => !document.querySelector('.bridge-assistant')")
            box = chat.locator(".bridge-chat-input textarea")
            box.click()
            box.type("Write one sentence about the sea.")
            page.wait_for_timeout(300)  # let the typed value reach the kernel
            box.press("Enter")
            page.wait_for_selector(".bridge-assistant .bridge-badge", timeout=300_000)
            assert chat.locator(".bridge-user").inner_text().endswith(
                "Write one sentence about the sea.")
            answer = chat.locator(".bridge-assistant .bridge-md").inner_text().strip()
            assert len(answer.split()) >= 2, answer
            assert chat.locator(".bridge-error").count() == 0
            shot(page, "first-answer-chat", ".bridge-chat")  # docs/assets/chat-widget.png
