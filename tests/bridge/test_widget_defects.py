"""The 18 defects issue 14 found by using the widgets as a new user would, one test each (each
failed on the main branch it was filed against), driven in-process on the real app."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from bridge import Client
from bridge.errors import BridgeError, ValidationError
from bridge.sdk.service import Service
from bridge.widgets import ChatWidget, ConnectWidget, ModelsWidget, StatusWidget
from colab_runtime.worker import WorkerServer, create_worker_app
from tests.support.fakes import FakeBackend, LocalFake
from tests.support.hub_standin import HubStandin
from tests.support.widgets import SECRET, until, user


@pytest.fixture
def fake(widget_fake: LocalFake) -> LocalFake:
    return widget_fake


@pytest.fixture
def app(widget_app: Flask) -> Flask:
    return widget_app

COLOUR = re.compile(r"(?:background|[^-]color)\s*:\s*([^;'\"]+)")


def theme_colours(markup: str) -> list[str]:
    """Every colour a style in ``markup`` sets (each must come from JupyterLab's theme)."""
    return COLOUR.findall(markup)


@pytest.fixture
def worker() -> Iterator[WorkerServer]:
    server = WorkerServer(create_worker_app(FakeBackend("gpu", models=["big-model"]), SECRET,
                                            runtime_info={"type": "jupyter"})).start()
    yield server
    server.stop()


def test_1_colours_come_from_the_theme(sdk: Client, fake: LocalFake) -> None:
    chat = ChatWidget(sdk)
    chat.send("Hi")
    assert chat.wait(10)
    chat.show_error("something went wrong")
    markup = "".join(b.value for b in chat.bubbles) + chat.error.value
    colours = theme_colours(markup)
    assert colours and all(c.strip().startswith("var(--jp-") for c in colours), colours
    chat.close()


def test_3_disconnect_with_no_name_detaches_nothing(
    sdk: Client, worker: WorkerServer
) -> None:
    sdk.colab.connect(worker_url=worker.url, worker_secret=SECRET, name="theirs")
    connect = ConnectWidget(sdk)
    connect.disconnect_button.click()
    assert connect.error_text.startswith("Fill in the Name of the worker to detach")
    assert "theirs" in [b.name for b in sdk.system.status().backends]
    connect.close()


def test_4_no_error_shows_a_secret(sdk: Client) -> None:
    short = "tooShort-9"  # the service wants 16 characters
    with pytest.raises(ValidationError) as refused:
        sdk.colab.connect(worker_url="http://127.0.0.1:9", worker_secret=short)
    assert short not in refused.value.message and "worker_secret" in refused.value.message
    connect = ConnectWidget(sdk)
    connect.url.value, connect.secret.value = "http://127.0.0.1:9", short
    connect.connect_button.click()
    assert connect.wait(10) and "worker_secret" in connect.error_text
    assert short not in connect.error_text and short not in connect.error.value
    # whatever a lower layer puts in its message, the widget never shows the typed value
    connect.show_error(BridgeError(f"upstream said: bad secret {short}"))
    assert connect.error_text == "upstream said: bad secret •••"
    connect.close()


def test_5_the_model_picker_starts_on_the_default_and_is_wide(sdk: Client) -> None:
    chat = ChatWidget(sdk)
    assert chat.model.index == 0 and chat.model.label == "service default"
    assert chat.model.layout.min_width and chat.model.style.description_width == "initial"
    chat.close()


def test_6_a_download_from_code_names_its_row_at_once(sdk: Client, hub: HubStandin) -> None:
    hub.add_repo("acme/slow", {"config.json": b"{}", "model.safetensors": os.urandom(200_000)})
    hub.delay = 0.02
    models = ModelsWidget(sdk, poll_interval=0.05)
    models.download("slow", repo_id="acme/slow")
    assert "<b>slow</b>" in models.rows["slow"].name.value
    assert models.rows["slow"].box in models.table.children
    assert models.wait(30) and models.error_text == ""
    models.close()


def test_7_a_removed_model_leaves_its_row(sdk: Client, hub: HubStandin) -> None:
    hub.add_repo("acme/tiny", {"config.json": b"{}", "model.safetensors": os.urandom(50_000)})
    models = ModelsWidget(sdk, poll_interval=0.05)
    models.download("tiny", repo_id="acme/tiny")
    assert models.wait(30) and models.rows["tiny"].button.description == "Load"
    sdk.models.delete("tiny")  # elsewhere (the CLI, another notebook)
    models.rows["tiny"].button.click()  # the row still says Load: that load fails...
    assert models.wait(10) and "tiny" in models.error_text
    assert "tiny" not in models.rows  # ...and the row is gone, as after a Refresh
    assert all("<b>tiny</b>" not in box.children[0].value for box in models.table.children)
    models.close()


def test_8_a_failed_download_says_so_on_its_row_with_retry(
    sdk: Client, hub: HubStandin
) -> None:
    models = ModelsWidget(sdk, poll_interval=0.05)
    url = hub.add_file("weights.safetensors", os.urandom(10_000))
    models.download("broken", url=url, sha256="0" * 64)
    assert models.wait(30)
    row = models.rows["broken"]
    assert row.status.value == "failed" and row.button.description == "Retry"
    assert not row.button.disabled and "does not match" in row.detail.value
    assert models.error_text.startswith("Download of broken failed:")
    models.refresh()
    assert row.button.description == "Retry"  # a Refresh keeps it
    models.close()


def test_9_progress_reads_like_tqdm_and_a_loaded_model_drops_its_bar(
    sdk: Client, hub: HubStandin
) -> None:
    from bridge.widgets import text

    assert text.progress({"status": "downloading", "progress": 0.22, "bytes_done": 120e6,
                          "bytes_total": 540e6, "speed_bps": 13e6, "eta_seconds": 40,
                          "eta": "PT40S"}) == "22% · 120M/540M · 13 MB/s · 0:40 left"
    hub.add_repo("acme/tiny", {"config.json": b"{}", "model.safetensors": os.urandom(400_000)})
    hub.delay = 0.01
    models = ModelsWidget(sdk, poll_interval=0.05)
    seen: list[str] = []
    models.download("tiny", repo_id="acme/tiny")
    models.rows["tiny"].detail.observe(lambda c: seen.append(c["new"]), "value")
    assert models.wait(30)
    assert seen and not any("PT" in s for s in seen)
    assert any(re.search(r"\d+% · \d[\d.]*k/\d[\d.]*k", s) for s in seen), seen
    models.rows["tiny"].button.click()
    assert models.wait(10) and "loaded in 0." in models.rows["tiny"].detail.value
    assert models.rows["tiny"].bar.layout.visibility == "hidden"
    models.close()


def test_10_to_12_the_transcript_scrolls_renders_markdown_and_sends_on_enter(
    sdk: Client, fake: LocalFake
) -> None:
    chat = ChatWidget(sdk)
    assert chat.transcript.layout.max_height and chat.transcript.layout.overflow == "auto"
    fake.queue("Use **bold** and `x`:\n\n```python\nx = 1\n```")
    chat.send("Show me code")
    assert chat.wait(10)
    answer = chat.bubbles[-1].value
    assert "<strong>bold</strong>" in answer and "```" not in answer
    assert "<pre class='bridge-code'" in answer and "var(--jp-code-font-family" in answer
    assert "line-height:1.5" in answer
    assert list(chat.transcript.children) == chat.bubbles[::-1]  # column-reverse: newest last
    assert "bridge-chat-input" in chat.prompt._dom_classes
    assert "bridge-send" in chat.send_button._dom_classes
    assert "bridge-chat" in chat.widget._dom_classes  # Enter's listener finds Send by these
    chat.close()


def test_13_connect_errors_are_plain_words(sdk: Client) -> None:
    connect = ConnectWidget(sdk)
    connect.url.value, connect.secret.value = "not a url", SECRET
    connect.connect_button.click()
    assert connect.wait(10)
    assert connect.error_text == "worker_url must be an http:// or https:// URL"
    for internal in ("HTTP 403: '_xsrf' argument missing from POST",
                     "Error: Gateway server specified in the gateway_url did not respond"):
        connect.show_error(BridgeError(internal))
        assert "xsrf" not in connect.error_text.replace("XSRF", "")
        assert "gateway_url" not in connect.error_text
        assert "Jupyter server" in connect.error_text
    connect.close()


def test_14_a_connect_that_never_answers_ticks_and_can_be_cancelled() -> None:
    with socket.socket() as silent:  # accepts, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        connect = ConnectWidget(Client(url, api_key="cb_x_y", timeout=30))
        connect.url.value, connect.secret.value = "http://127.0.0.1:9", SECRET
        connect.connect_button.click()
        assert until(lambda: "Connecting… 0:01" in connect.result.value, 5)
        assert connect.cancel_button.layout.display is None and connect.connect_button.disabled
        connect.cancel_button.click()
        assert not connect.connect_button.disabled
        assert connect.result.value.startswith("Cancelled")
        time.sleep(1.2)
        assert connect.result.value.startswith("Cancelled")  # the ticker stopped
        connect.close()


def test_15_labels_are_never_cut(sdk: Client) -> None:
    for widget in (ConnectWidget(sdk), ChatWidget(sdk), StatusWidget(sdk, interval=0)):
        fields = [f for f in vars(widget).values() if getattr(f, "description", "") and
                  hasattr(f, "style") and hasattr(f.style, "description_width")]
        assert fields
        assert all(f.style.description_width == "initial" for f in fields), widget
        widget.close()


def test_16_status_says_why_a_backend_is_unhealthy(sdk: Client) -> None:
    status = StatusWidget(sdk, interval=0)
    answer = sdk.system.status()
    answer.backends.append({"name": "t4", "kind": "worker", "healthy": False,
                            "url": "http://10.0.0.2:8765", "latency_ms": None,
                            "last_error": "connection refused", "time_left": "PT1H2M"})
    status.show(answer)
    assert "last error: connection refused" in status.backends.value
    assert "http://10.0.0.2:8765" in status.backends.value and "1:02:00 left" in \
        status.backends.value
    status.close()


def test_17_a_bad_base_url_keeps_its_reason() -> None:
    chat = ChatWidget(base_url="ftp://example")
    first = chat.error_text
    assert first.startswith("base_url must start with http://")
    chat.send("Hi")
    assert chat.error_text == first
    chat.close()


def test_18_a_stopped_service_says_so(tmp_path: Path) -> None:
    process = subprocess.Popen(["sleep", "30"], start_new_session=True)
    service = Service("http://127.0.0.1:5999", process, tmp_path / "log")
    assert "started here" in repr(service)
    service.stop(timeout=5)
    assert process.poll() is not None
    assert "already running" not in repr(service) and "stopped" in repr(service)


def test_2_the_quickstart_uses_bridge_url_and_key_and_registers_no_one(
    app: Flask, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from tests.end_to_end.quickstart_cells import run_first_cells
    from tests.support.app import LiveServer

    with LiveServer(app) as server, user(app, "owner") as owner:
        key = owner.auth.create_api_key("nb").key
        monkeypatch.setenv("BRIDGE_URL", server.url)
        monkeypatch.setenv("BRIDGE_API_KEY", key)
        monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))  # no stored login
        scope = run_first_cells(start_server=False)  # never a second server on :5000
        assert scope["service"].url == server.url  # $BRIDGE_URL, base_url left empty
        assert not scope["service"].started_here
        assert scope["client"].auth.session().username == "owner"
        assert [u["username"] for u in owner.admin.users()] == ["owner"]
