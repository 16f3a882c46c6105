"""The notebook widgets driven in-process as a user would: type, click, read what they show.

Each widget runs on the SDK against the real app (in-process through httpx.WSGITransport, or
a real loopback server where a server must go away); a FakeBackend answers.
"""

from __future__ import annotations

import html
import os
import re
import threading
import time

import pytest
from flask import Flask

from bridge import Client
from bridge.config import DEFAULT_MODEL_ID
from bridge.serving import create_server
from bridge.widgets import ChatWidget, ConnectWidget, ModelsWidget, StatusWidget
from colab_runtime.worker import WorkerServer, create_worker_app
from tests.support.app import LiveServer
from tests.support.fakes import FakeBackend, LocalFake
from tests.support.hub_standin import HubStandin
from tests.support.remote import Google, sign_in
from tests.support.widgets import PASSWORD, SECRET, until, user


@pytest.fixture
def fake(widget_fake: LocalFake) -> LocalFake:
    return widget_fake


@pytest.fixture
def app(widget_app: Flask) -> Flask:
    return widget_app


def bubbles(chat: ChatWidget) -> list[str]:
    """The transcript's turns, oldest first, as the text a person reads."""
    assert list(chat.transcript.children) == chat.bubbles[::-1]  # shown newest at the bottom
    return [re.sub(r"<[^>]+>", "", html.unescape(child.value)).strip() for child in chat.bubbles]


def test_chat_streams_tokens_shows_the_backend_and_keeps_the_conversation(
    sdk: Client, fake: LocalFake
) -> None:
    chat = ChatWidget(sdk)
    assert [v for _, v in chat.model.options] == ["", DEFAULT_MODEL_ID]
    chat.model.value = DEFAULT_MODEL_ID
    fake.queue("Hello Ada, and welcome to the notebook.", "Your name is Ada.")
    fake.hang_after = 2
    chat.prompt.value = "My name is Ada."
    chat.send_button.click()
    assert fake.hanging.wait(10)
    assert chat.busy and chat.prompt.value == "" and not chat.stop_button.disabled
    assert "Hello Ada," in bubbles(chat)[1] and "welcome" not in bubbles(chat)[1]  # streaming
    fake.hang_after = None
    fake.release()
    assert chat.wait(10) and not chat.busy
    assert "Hello Ada, and welcome to the notebook." in bubbles(chat)[1]
    assert "My name is Ada." in bubbles(chat)[0]
    assert ">local</span>" in chat.badge.value and "7 tokens" in chat.badge.value
    assert ">local</span>" in chat.bubbles[1].value  # each answer keeps its own badge
    first = chat.conversation_id
    assert first and fake.history[-1].model == DEFAULT_MODEL_ID
    chat.prompt.value = "What is my name?"
    chat.send_button.click()
    assert chat.wait(10) and chat.conversation_id == first
    assert [m.content for m in fake.history[-1].messages][:2] == [
        "My name is Ada.", "Hello Ada, and welcome to the notebook."]
    assert [m["content"] for m in chat.messages] == [
        "My name is Ada.", "Hello Ada, and welcome to the notebook.", "What is my name?",
        "Your name is Ada."]
    assert len(sdk.conversations.get(first).messages) == 4
    chat.new_button.click()
    assert chat.conversation_id is None and bubbles(chat) == [] and chat.badge.value == ""
    chat.close()


def test_chat_errors_stay_in_the_widget(sdk: Client, fake: LocalFake) -> None:
    chat = ChatWidget(sdk, model_id="llama-9000")
    chat.prompt.value = "   "
    chat.send_button.click()
    assert chat.error_text == "Type a message first." and fake.history == []
    chat.prompt.value = "Hi there"
    chat.send_button.click()
    assert chat.wait(10)
    assert chat.error_text == "Model not found: llama-9000"
    assert bubbles(chat) == [] and chat.prompt.value == "Hi there"  # the prompt is kept
    chat.model.value = ""
    chat.send_button.click()
    assert chat.wait(10) and chat.error_text == ""
    assert "Hello from the fake backend." in bubbles(chat)[1]
    fake.die_after = 1
    chat.send("Once more")
    assert chat.wait(10)
    assert chat.error_text == "local died after 1 tokens"
    assert "Hello [interrupted]" in bubbles(chat)[-1]
    chat.close()


def test_stop_ends_the_answer_and_a_gone_server_is_reported(
    app: Flask, fake: LocalFake
) -> None:
    with LiveServer(app) as server:
        client = Client(server.url, username="alice", password=PASSWORD)
        client.auth.register("alice", "alice@example.org", PASSWORD)
        chat = ChatWidget(client)
        fake.hang_after = 2
        chat.send("Tell me a long story")
        assert until(lambda: "Hello from" in "".join(bubbles(chat)))
        chat.stop_button.click()
        fake.release()
        assert chat.wait(10) and not chat.busy and chat.error_text == ""
        assert bubbles(chat)[-1].endswith("Hello from [stopped]")
        fake.hang_after = None
    chat.send("Are you there?")  # the server is gone now
    assert chat.wait(10)
    assert chat.error_text.startswith(f"cannot reach the service at {server.url} (")
    assert chat.prompt.value == "Are you there?"
    later = ChatWidget(base_url=server.url, api_key="cb_x_y")
    assert later.error_text.startswith("cannot reach the service")  # built while it is down
    bad = ChatWidget(base_url="localhost:5000")
    assert bad.error_text.startswith("base_url must start with http://")
    bad.send("Hi")
    assert bad.error_text.startswith("base_url must start with http://")  # the reason stays
    for widget in (chat, later, bad):
        widget.close()
    client.close()


def test_models_download_with_live_progress_then_load_and_unload(
    sdk: Client, hub: HubStandin, fake: LocalFake
) -> None:
    hub.add_repo("HuggingFaceTB/SmolLM2-360M-Instruct", {
        "config.json": b'{"model_type": "llama"}', "model.safetensors": os.urandom(1_500_000)})
    hub.delay = 0.01
    models = ModelsWidget(sdk, poll_interval=0.05)
    row = models.rows["smollm2-360m-instruct"]
    assert (row.status.value, row.button.description) == ("downloadable", "Download")
    assert models.rows[DEFAULT_MODEL_ID].button.description == "Unload"  # loaded already
    seen: list[float] = []
    row.bar.observe(lambda change: seen.append(change["new"]), "value")
    row.button.click()
    assert models.wait(30) and models.error_text == ""
    assert seen == sorted(seen) and seen[-1] == 1.0 and any(0 < v < 1 for v in seen)
    assert row.bar.bar_style == "success" and "100%" in row.detail.value
    assert (row.status.value, row.button.description) == ("ready", "Load")
    row.button.click()
    assert models.wait(10) and "loaded in" in row.detail.value
    assert (row.status.value, row.button.description) == ("loaded", "Unload")
    assert "smollm2-360m-instruct" in fake.in_memory
    row.button.click()
    assert models.wait(10) and row.button.description == "Load"
    assert "smollm2-360m-instruct" not in fake.in_memory
    models.close()


def test_models_errors_are_shown(sdk: Client, hub: HubStandin) -> None:
    models = ModelsWidget(sdk, poll_interval=0.05)
    url = hub.add_file("weights.safetensors", os.urandom(100_000))
    models.download("broken", url=url, sha256="0" * 64)
    assert models.wait(30)
    assert models.error_text.endswith("does not match the expected 0000000000000000… "
                                      "(CHECKSUM_MISMATCH)")
    assert models.rows["broken"].bar.bar_style == "danger"
    models.download("llama-9000")
    assert models.wait(10) and "not in the registry" in models.error_text
    models.close()


def test_status_shows_resources_and_refreshes_until_closed(app: Flask, sdk: Client) -> None:
    status = StatusWidget(sdk, interval=0.05)
    assert status.running and status.refreshes >= 1
    assert " cores" in status.cpu_text.value and " of " in status.memory_text.value
    assert 0 < status.memory.value <= 100
    assert status.gpu_text.value.startswith("no GPU")
    assert DEFAULT_MODEL_ID in status.models.value
    assert "<td style='padding:0 8px;vertical-align:top'>local</td>" in status.backends.value
    seen = status.refreshes
    assert until(lambda: status.refreshes >= seen + 3)
    status.auto.value = False
    assert not status.running
    status.refresh_button.click()
    status.close()
    assert not status.running and status._thread is None


def test_status_plots_tokens_per_second_per_backend(sdk: Client, fake: LocalFake) -> None:
    status = StatusWidget(sdk, interval=0)
    status.refresh()
    fake.queue("one two three four five six")
    sdk.chat.completion(prompt="count", parameters={"max_tokens": 6, "temperature": 0.5})
    time.sleep(0.05)
    status.refresh()
    assert list(status.rates) == ["local"]
    assert status.rates["local"][-1] > 0
    assert "tokens/s local" in status.plots.value and " tok/s" in status.plots.value
    entry = sdk.system.status().backends[0]
    assert entry["name"] == "local" and entry["tokens_generated"] == 6
    status.close()


def test_status_reports_a_server_that_goes_away(app: Flask) -> None:
    with LiveServer(app) as server, user(app) as alice:
        key = alice.auth.create_api_key("w").key
        status = StatusWidget(base_url=server.url, api_key=key, interval=0)
        assert not status.running and status.error_text == ""
    status.refresh_button.click()
    assert status.error_text.startswith(f"cannot reach the service at {server.url}")
    assert "no answer at" in status.updated.value
    again = create_server("127.0.0.1", int(server.url.rsplit(":", 1)[1]), app)  # restarted
    thread = threading.Thread(target=again.serve_forever, daemon=True)
    thread.start()
    try:
        status.refresh_button.click()
        assert status.error_text == "" and "reconnected" in status.updated.value
    finally:
        again.shutdown()
        again.server_close()
        thread.join(5)
    status.close()


def test_chat_keeps_working_when_the_service_restarts(app: Flask, fake: LocalFake) -> None:
    with LiveServer(app) as server, user(app) as alice:
        key = alice.auth.create_api_key("w").key
        chat = ChatWidget(base_url=server.url, api_key=key)
        first = chat.send("Hello?")
        assert first is not None
        first.join(10)
        assert "Hello from the fake backend." in bubbles(chat)[1]
    down = chat.send("Are you there?")  # the service is gone: said in the widget
    assert down is not None
    down.join(10)
    assert chat.error_text.startswith(f"cannot reach the service at {server.url}")
    assert not chat.busy
    again = create_server("127.0.0.1", int(server.url.rsplit(":", 1)[1]), app)  # restarted
    thread = threading.Thread(target=again.serve_forever, daemon=True)
    thread.start()
    try:
        back = chat.send("And now?")
        assert back is not None
        back.join(10)
        assert chat.error_text == ""
        assert "Hello from the fake backend." in bubbles(chat)[-1]
        assert fake.history[-1].messages[-1].content == "And now?"
    finally:
        again.shutdown()
        again.server_close()
        thread.join(5)
    chat.close()


def test_connect_a_worker_then_detach_and_the_oauth_link(
    app: Flask, sdk: Client, google: Google  # noqa: F811
) -> None:
    gpu = FakeBackend("gpu", models=["big-model"])
    worker = WorkerServer(create_worker_app(gpu, SECRET, runtime_info={
        "type": "jupyter", "device": "cuda", "gpu": "Tesla T4"})).start()
    try:
        connect = ConnectWidget(sdk)
        connect.connect_button.click()
        assert connect.error_text == "Fill in the worker URL first."
        connect.url.value, connect.secret.value, connect.name.value = worker.url, SECRET, "t4"
        connect.connect_button.click()
        assert connect.wait(30) and connect.error_text == ""
        assert "<b>connected</b>: worker <code>t4</code>" in connect.result.value
        assert "Tesla T4" in connect.result.value
        status = StatusWidget(sdk, interval=0)
        assert "<td style='padding:0 8px;vertical-align:top'>t4</td>" in status.backends.value
        connect.disconnect_button.click()
        assert connect.result.value == "detached <code>t4</code>"
        status.refresh()
        assert "t4" not in status.backends.value
    finally:
        worker.stop()
    connect.mode.value = "colab"
    assert connect.manual in connect.fields.children and connect.url not in connect.fields.children
    connect.client_id.value = google.credentials["client_id"]
    connect.client_secret.value = google.credentials["client_secret"]
    connect.connect_button.click()
    assert connect.wait(30) and connect.error_text == ""
    assert "sign in with Google</a>" in connect.result.value
    assert f"href='{google.endpoints.auth_uri}?" in connect.result.value
    with user(app, "bob") as bob:
        refused = ConnectWidget(bob)
        refused.url.value, refused.secret.value = worker.url, SECRET
        refused.connect_button.click()
        assert refused.wait(10) and refused.error_text == "This action needs an admin account"
    for widget in (connect, status, refused):
        widget.close()


def test_colab_mode_sends_the_tunnel_the_user_chose(
    app: Flask, sdk: Client, google: Google  # noqa: F811
) -> None:
    connect = ConnectWidget(sdk)
    connect.mode.value = "colab"
    assert connect.tunnel in connect.fields.children and connect.tunnel.value == "auto"
    connect.client_id.value = google.credentials["client_id"]
    connect.client_secret.value = google.credentials["client_secret"]
    connect.connect_button.click()
    assert connect.wait(30) and connect.error_text == ""
    link = re.search(r"href='([^']+)'", connect.result.value)
    assert link is not None
    sign_in(app.test_client(), html.unescape(link.group(1)))
    connect.connect_button.click()  # signed in; no ngrok token, the tunnel left to choose
    assert connect.wait(30)
    assert "a Colab runtime is reached only through a tunnel" in connect.error_text
    assert google.colab.assignments == {}  # refused before any runtime was assigned
    connect.ngrok_token.value = " 2abc_token "
    assert (connect.body()["tunnel"], connect.body()["ngrok_token"]) == ("ngrok", "2abc_token")
    connect.tunnel.value = "none"  # chosen by hand: sent as chosen
    assert connect.body()["tunnel"] == "none"
    connect.mode.value, connect.tunnel.value, connect.ngrok_token.value = "runtime", "auto", ""
    connect.url.value = "http://127.0.0.1:9"
    assert "tunnel" not in {k for k, v in connect.body().items() if v is not None}
    connect.close()


def test_status_shows_the_gpu_of_a_cuda_service(sdk: Client) -> None:
    """The GPU row, fed the shape GET /system/status has on a CUDA machine (none here)."""
    status = StatusWidget(sdk, interval=0)
    answer = sdk.system.status()
    answer.resources["gpu"] = {"name": "NVIDIA H100", "usage": 37.0,
                               "memory_used": 20 * 2**30, "memory_total": 80 * 2**30}
    status.show(answer)
    assert status.gpu_text.value == "NVIDIA H100: 20.0 GB of 80.0 GB, 37.0% busy"
    assert status.gpu_memory.value == 25.0
    status.close()
