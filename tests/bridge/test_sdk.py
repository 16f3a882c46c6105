"""bridge.Client against the real app in-process (httpx.WSGITransport), endpoint by endpoint.

A FakeBackend stands where the local model does (canned answers, failure knobs); one test
runs the real default model. test_sdk_live.py drives the SDK against real loopback servers.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask

from bridge import Client
from bridge.backends.local import LocalBackend
from bridge.config import DEFAULT_MODEL_ID
from bridge.errors import (
    BackendUnavailable,
    Conflict,
    DownloadFailed,
    Forbidden,
    ModelNotFound,
    NotFound,
    RateLimitExceeded,
    Unauthorized,
    ValidationError,
)
from bridge.models.store import ModelStore
from bridge.router import Router
from tests.support.fakes import LocalFake
from tests.support.hub_standin import HubStandin

PASSWORD = "correct horse"


@pytest.fixture
def fake() -> LocalFake:
    return LocalFake(loaded=True)


@pytest.fixture
def app(make_app: Callable[..., Flask], home: Path, fake: LocalFake, tmp_path: Path,
        hub: HubStandin) -> Flask:
    config = {"home": home, "hf_endpoint": hub.url, "download_timeout": 5,
              "download_retries": 0, "tier_limits": {"free": "40/minute", "pro": "1000/minute",
                                                     "enterprise": "1000/minute"}}
    return make_app(config, router=Router(fake), local=fake, store=ModelStore(tmp_path / "m"))


def connect(app: Flask, **credentials: Any) -> Client:
    return Client("http://localhost", transport=httpx.WSGITransport(app=app), **credentials)


@pytest.fixture
def sdk(app: Flask) -> Iterator[Client]:
    """alice, the first account (so the admin), logged in on first use."""
    with connect(app, username="alice", password=PASSWORD) as client:
        client.auth.register("alice", "alice@example.org", PASSWORD)
        yield client


def other_user(app: Flask, name: str = "bob") -> Client:
    client = connect(app, username=name, password=PASSWORD)
    client.auth.register(name, f"{name}@example.org", PASSWORD)
    return client


def test_login_session_api_keys_and_logout(app: Flask, sdk: Client) -> None:
    assert sdk.access_token is None  # no I/O until the first call
    session = sdk.auth.session()
    assert (session.username, session.is_authenticated, session.role) == ("alice", True, "admin")
    assert sdk.access_token and sdk.refresh_token
    key = sdk.auth.create_api_key("notebook")
    assert key.key.startswith(key.prefix + "_") and key.name == "notebook"
    assert [k.id for k in sdk.auth.list_api_keys()] == [key.id]
    assert all(k.key is None for k in sdk.auth.list_api_keys())  # the secret is shown once
    with connect(app, api_key=key.key) as keyed:
        assert keyed.auth.session().auth_method == "api_key"
        sdk.auth.revoke_api_key(key.id)
        with pytest.raises(Unauthorized):
            keyed.models.list()
    before = sdk.refresh_token
    assert sdk.auth.refresh().token_type == "bearer" and sdk.refresh_token != before
    old = sdk.access_token
    assert sdk.auth.logout().message == "Logged out successfully"
    assert sdk.access_token is None and not sdk.auth.session().is_authenticated
    with connect(app, access_token=old) as stale, pytest.raises(Unauthorized):
        stale.models.list()  # revoked on the service, and no way to renew it


def test_wrong_credentials_and_taken_names(app: Flask, sdk: Client) -> None:
    sdk.auth.session()
    with connect(app, username="alice", password="not the password") as wrong:
        with pytest.raises(Unauthorized, match="Invalid username or password"):
            wrong.models.list()
    with pytest.raises(Conflict):
        sdk.auth.register("alice", "other@example.org", PASSWORD)
    with pytest.raises(ValueError, match="both username and password"):
        Client("http://testserver", username="alice")
    assert sdk.auth.session().username == "alice"  # nothing changed
    with connect(app) as fresh:
        assert fresh.auth.login_or_register("carol", PASSWORD, email="c@example.org").user_id
        assert fresh.auth.session().username == "carol"
        fresh.auth.login_or_register("carol", PASSWORD, email="c@example.org")  # logs in
    with connect(app) as wrong, pytest.raises(Unauthorized, match="Invalid username or password"):
        wrong.auth.login_or_register("carol", "not the password", email="c@example.org")
    assert wrong.access_token is None and wrong.username is None


def test_chat_completion_stream_and_conversation(sdk: Client, fake: LocalFake) -> None:
    fake.queue("Hi Ada, nice to meet you.", "one two three", "Your name is Ada.")
    first = sdk.chat.completion(prompt="My name is Ada.", model_id=DEFAULT_MODEL_ID,
                                temperature=0.5)
    assert first.completion == "Hi Ada, nice to meet you." and first.text == first.completion
    assert (first.backend, first.model_id, first.usage.completion_tokens) == ("local",
                                                                              DEFAULT_MODEL_ID, 6)
    assert fake.history[-1].temperature == 0.5
    with sdk.chat.stream("Count to three", conversation_id=first.conversation_id) as stream:
        tokens = list(stream)
    assert tokens == ["one", " two", " three"] and stream.final.completion == "one two three"
    assert stream.final.conversation_id == first.conversation_id
    answer = sdk.generate("What is my name?", DEFAULT_MODEL_ID, max_tokens=12,
                          conversation_id=first.conversation_id)
    assert answer.response == "Your name is Ada." and answer.usage.tokens == 4
    assert [m.content for m in fake.history[-1].messages][:2] == ["My name is Ada.",
                                                                 "Hi Ada, nice to meet you."]
    conversation = sdk.conversations.get(first.conversation_id)
    assert [(m.role, m.content) for m in conversation.messages][-2:] == [
        ("user", "What is my name?"), ("assistant", "Your name is Ada.")]
    assert conversation.messages[0].timestamp.endswith("+00:00")
    assert [c.id for c in sdk.conversations.list()] == [first.conversation_id]
    assert [c.message_count for c in sdk.conversations.list(limit=1)] == [6]
    fake.queue("a b c d")
    streamed = sdk.generate("Letters", stream=True)
    assert "".join(streamed) == "a b c d" and streamed.final.response == "a b c d"
    sdk.conversations.delete(first.conversation_id)
    with pytest.raises(NotFound):
        sdk.conversations.get(first.conversation_id)


def test_errors_are_typed_by_their_code(app: Flask, sdk: Client, fake: LocalFake) -> None:
    with pytest.raises(ModelNotFound) as missing:
        sdk.chat.completion(prompt="Hi", model_id="llama-9000")
    assert missing.value.details == {"model_id": "llama-9000"}
    assert missing.value.headers["X-Request-ID"]
    with pytest.raises(ValidationError) as bad:
        sdk.chat.completion(prompt="Hi", temperature=-1)
    assert bad.value.details["field"] == "parameters.temperature"
    with pytest.raises(ValidationError):
        sdk.chat.completion(prompt="")
    with pytest.raises(TypeError, match="unknown parameter"):
        sdk.chat.completion(prompt="Hi", temprature=0)
    with pytest.raises(TypeError, match="model_id="):  # OpenAI's name, as embeddings take it
        sdk.chat.completion(prompt="Hi", model="smollm2-135m-instruct")
    fake.die_after = 2
    stream = sdk.chat.stream("Tell me a story")
    with pytest.raises(BackendUnavailable, match="died after 2 tokens"):
        for _ in stream:
            pass
    assert stream.tokens == ["Hello", " from"] and stream.final is None
    fake.die_after = None
    mine = sdk.chat.completion(prompt="Hi").conversation_id
    with other_user(app) as bob, pytest.raises(NotFound):
        bob.conversations.get(mine)  # another user's conversation: not found


def test_rate_limit_carries_retry_after(sdk: Client) -> None:
    with pytest.raises(RateLimitExceeded) as limited:
        for _ in range(41):
            sdk.models.list()
    assert limited.value.retry_after is not None and 0 < limited.value.retry_after <= 60
    assert limited.value.details["limit"] == 40


def test_models_catalog_load_unload_and_status(sdk: Client, fake: LocalFake) -> None:
    models = {m.id: m for m in sdk.models.list()}
    assert models[DEFAULT_MODEL_ID].type == "chat"
    assert models["smollm2-360m-instruct"].status == "downloadable"
    loaded = sdk.models.load(DEFAULT_MODEL_ID, device="cpu", quantization="none")
    assert (loaded.status, loaded.device, loaded.load_time) == ("loaded", "cpu", 0.01)
    assert sdk.models.unload(DEFAULT_MODEL_ID).status == "unloaded"
    assert DEFAULT_MODEL_ID not in fake.in_memory
    assert sdk.models.status("smollm2-360m-instruct").status == "downloadable"
    with pytest.raises(ValidationError):
        sdk.models.load(DEFAULT_MODEL_ID, device="tpu")
    with pytest.raises(ModelNotFound):
        sdk.models.status("no-such-model")


def test_download_blocks_with_progress_then_delete(
    app: Flask, sdk: Client, hub: HubStandin
) -> None:
    hub.add_repo("acme/tiny", {"config.json": b'{"model_type": "llama"}',
                               "model.safetensors": os.urandom(1_000_000)})
    hub.delay = 0.01
    seen: list[tuple[str, float]] = []
    job = sdk.models.download("tiny", repo_id="acme/tiny", poll_interval=0.05,
                              progress=lambda j: seen.append((j.status, j.progress)))
    assert (job.status, job.progress, job.eta) == ("completed", 1.0, "PT0S")
    assert seen[0][0] in ("queued", "downloading") and seen[-1] == ("completed", 1.0)
    assert [p for _, p in seen] == sorted(p for _, p in seen) and len(seen) >= 3
    assert sdk.models.status("tiny").status == "completed"
    assert "tiny" in {m.id for m in sdk.models.list()}
    with pytest.raises(Conflict):
        sdk.models.download("tiny", repo_id="acme/tiny")
    assert sdk.models.delete("tiny").status == "deleted"
    assert "tiny" not in {m.id for m in sdk.models.list()}


def test_failed_and_cancelled_downloads(sdk: Client, hub: HubStandin) -> None:
    url = hub.add_file("weights.safetensors", os.urandom(200_000))
    with pytest.raises(DownloadFailed) as failed:
        sdk.models.download("broken", url=url, sha256="0" * 64, poll_interval=0.05)
    assert failed.value.details == {"model_id": "broken", "error_type": "CHECKSUM_MISMATCH"}
    slow = hub.add_file("slow.safetensors", os.urandom(2_000_000))
    hub.delay = 0.05
    job = sdk.models.download("slow", url=slow, wait=False)
    assert job.status in ("queued", "downloading") and job.model_id == "slow"
    assert sdk.models.cancel("slow").status == "cancelled"
    with pytest.raises(NotFound):
        sdk.models.cancel("slow")
    with pytest.raises(ModelNotFound):
        sdk.models.download("not-in-the-registry")


def test_system_status_has_attribute_access(sdk: Client) -> None:
    status = sdk.system.status()
    assert status.status == "ok"
    assert status.resources.memory.total > 0 and status.resources.cpu.cores >= 1
    assert status.resources["gpu"] is None  # no GPU on this machine: a CUDA runner says more
    assert status.models.loaded == [DEFAULT_MODEL_ID]
    assert [(b.name, b.kind, b.healthy) for b in status.backends] == [("local", "local", True)]
    assert status.to_dict()["resources"]["memory"]["total"] == status.resources.memory.total
    with pytest.raises(AttributeError, match="no field 'bogus'"):
        _ = status.bogus
    assert sdk.system.health().status == "ok"


def test_profile_preferences_admin_and_audit(app: Flask, sdk: Client) -> None:
    assert sdk.user.profile().username == "alice"
    sdk.user.update_preferences(theme="dark", default_model=DEFAULT_MODEL_ID)
    assert sdk.user.profile().preferences.theme == "dark"
    with other_user(app) as bob:
        bob.auth.session()
        with pytest.raises(Forbidden):
            bob.admin.users()
        with pytest.raises(Forbidden):
            bob.db.backup()
        bob_id = next(u.id for u in sdk.admin.users() if u.username == "bob")
        assert sdk.admin.update_user(bob_id, tier="pro").tier == "pro"
    assert sdk.admin.audit(event="login")[0].event == "login"


def test_backup_list_and_restore(sdk: Client, fake: LocalFake) -> None:
    made = sdk.db.backup()
    assert made.backup_id and made.status
    assert made.backup_id in [b.id for b in sdk.db.list()]
    after = sdk.chat.completion(prompt="Written after the backup").conversation_id
    restored = sdk.db.restore(made.backup_id)
    assert restored.restored_at and restored.status
    with pytest.raises(NotFound):
        sdk.conversations.get(after)  # the database went back to the backup
    with pytest.raises(NotFound):
        sdk.db.restore("20250406T081423Z-1a2b3c4d")


@pytest.mark.model
def test_real_model_answers_through_the_sdk(
    make_app: Callable[..., Flask], home: Path, model_store: ModelStore,
    local_backend: LocalBackend,
) -> None:
    app = make_app({"home": home}, router=Router(local_backend), local=local_backend,
                   store=model_store)
    with connect(app, username="ada", password=PASSWORD) as client:
        client.auth.register("ada", "ada@example.org", PASSWORD)
        answer = client.chat.completion(prompt="What is the capital of France?",
                                        model_id=DEFAULT_MODEL_ID, temperature=0, max_tokens=24)
        assert "Paris" in answer.completion and answer.backend == "local"
        assert 0 < answer.usage.completion_tokens <= 24
        assert answer.usage.total_tokens == (answer.usage.prompt_tokens
                                             + answer.usage.completion_tokens)
        stream = client.chat.stream("What is the capital of France?", temperature=0,
                                    max_tokens=24, conversation_id=answer.conversation_id)
        text = "".join(stream)
        assert "Paris" in text and text == stream.final.completion
