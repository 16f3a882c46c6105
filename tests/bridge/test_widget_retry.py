"""Retry in the models widget visibly acts (issue 25, friction 6): pressing it disables the
button and says "Retrying…" while the service is asked again, then shows the new outcome: a
download, or the same plain-words failure marked with its attempt number and time. Driven
in-process on the real app, as a user would: click, read what the row and error line show."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask

from bridge import Client
from bridge.models.store import ModelStore
from bridge.router import Router
from bridge.widgets import ModelsWidget
from tests.support.fakes import LocalFake
from tests.support.hub_standin import HubStandin
from tests.support.widgets import user

ATTEMPT = r"attempt {n} at \d\d:\d\d:\d\d"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed when the block ends: nothing listens


def watch(models: ModelsWidget, model_id: str) -> list[tuple[str, bool, str, str]]:
    """Every (button label, disabled, status, detail) the row shows from now on."""
    row = models.rows[model_id]
    seen: list[tuple[str, bool, str, str]] = []

    def record(_change: Any) -> None:
        seen.append((row.button.description, row.button.disabled, row.status.value,
                     row.detail.value))

    for part, name in ((row.button, "description"), (row.button, "disabled"),
                       (row.status, "value"), (row.detail, "value")):
        part.observe(record, name)
    return seen


def test_retry_on_an_unreachable_hub_says_it_ran_and_when(
    make_app: Callable[..., Flask], home: Path, tmp_path: Path, widget_fake: LocalFake,
) -> None:
    app = make_app({"home": home, "hf_endpoint": f"http://127.0.0.1:{closed_port()}",
                    "download_timeout": 5, "download_retries": 0, "ratelimit_enabled": False},
                   router=Router(widget_fake), local=widget_fake,
                   store=ModelStore(tmp_path / "models"))
    with user(app) as sdk:
        models = ModelsWidget(sdk, poll_interval=0.05)
        models.download("tiny", repo_id="org/tiny")
        assert models.wait(30)
        row = models.rows["tiny"]
        first = row.detail.value
        assert row.status.value == "failed" and row.button.description == "Retry"
        assert "Cannot reach the Hugging Face Hub" in first and "attempt" not in first
        for hint in ("HTTPS_PROXY=", "HF_ENDPOINT=", "HF_TOKEN", "a folder on this machine"):
            assert hint in first, first
        assert models.error_text.startswith("Download of tiny failed: Cannot reach")

        for attempt in (2, 3):
            seen = watch(models, "tiny")
            row.button.click()  # Retry
            assert models.wait(30)
            # while it ran: the button disabled, saying so, and the row saying which attempt
            assert ("Retrying…", True, "retrying",
                    f"<small>retrying… (attempt {attempt})</small>") in seen, seen
            # then the same failure, marked with the attempt and its time, and Retry again
            assert row.status.value == "failed"
            assert row.button.description == "Retry" and not row.button.disabled
            assert re.fullmatch(rf"<small>{ATTEMPT.format(n=attempt)}: Cannot reach the "
                                r"Hugging Face Hub .*</small>", row.detail.value), row.detail.value
            assert re.match(rf"Download of tiny failed again \({ATTEMPT.format(n=attempt)}\): "
                            "Cannot reach the Hugging Face Hub", models.error_text)
            assert "HF_ENDPOINT=" in models.error_text
        models.close()


def test_retry_after_the_cause_is_fixed_shows_the_download(
    sdk: Client, hub: HubStandin
) -> None:
    url = hub.add_file("later.safetensors", os.urandom(20_000))
    hub.missing.add("later.safetensors")  # not published yet: 404
    models = ModelsWidget(sdk, poll_interval=0.05)
    models.download("later", url=url)
    assert models.wait(30)
    row = models.rows["later"]
    assert row.button.description == "Retry" and models.error_text

    hub.missing.discard("later.safetensors")  # published now
    seen = watch(models, "later")
    row.button.click()
    assert models.wait(30)
    assert any(label == "Retrying…" and disabled for label, disabled, *_ in seen), seen
    assert row.status.value == "ready" and row.button.description == "Load"
    assert "100%" in row.detail.value and "attempt" not in row.detail.value
    assert models.error_text == ""  # the old failure is gone
    models.close()
