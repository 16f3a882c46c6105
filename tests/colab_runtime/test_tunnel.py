"""Tunnels: ``none`` names the local port; ``ngrok`` is checked at its seam (pyngrok faked)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bridge.errors import BackendUnavailable, ValidationError
from colab_runtime.tunnel import open_tunnel


def test_none_names_the_local_port() -> None:
    tunnel = open_tunnel("none", 8765)
    assert (tunnel.public_url, tunnel.kind) == ("http://127.0.0.1:8765", "none")
    tunnel.close()
    tunnel.close()
    assert open_tunnel("none", 8765, host="192.168.1.20").public_url == "http://192.168.1.20:8765"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "ngrok"}, "needs an ngrok_token"),
        ({"kind": "ngrok", "ngrok_token": ""}, "needs an ngrok_token"),
        ({"kind": "cloudflare"}, "unknown tunnel"),
        ({"kind": "none", "port": 0}, "out of range"),
        ({"kind": "ngrok", "ngrok_token": "t", "basic_auth": "nocolon"}, "user:password"),
        ({"kind": "none", "basic_auth": "u:password1"}, "needs an ngrok tunnel"),
    ],
)
def test_bad_arguments_are_clear_validation_errors(kwargs: dict[str, Any], message: str) -> None:
    args = {"port": 8765, **kwargs}
    with pytest.raises(ValidationError, match=message):
        open_tunnel(args.pop("kind"), args.pop("port"), **args)


class FakeNgrok:
    """Stands in for ``pyngrok.ngrok`` (which would download and start the ngrok binary)."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.connected: list[dict[str, Any]] = []
        self.disconnected: list[str] = []

    def connect(self, addr: str, proto: str, pyngrok_config: Any = None, **options: Any) -> Any:
        if self.error is not None:
            raise self.error
        self.connected.append({"addr": addr, "proto": proto, "config": pyngrok_config, **options})
        return type("NgrokTunnel", (), {"public_url": "https://ab12.ngrok-free.app"})()

    def disconnect(self, public_url: str, pyngrok_config: Any = None) -> None:
        self.disconnected.append(public_url)


@pytest.fixture
def fake_ngrok(monkeypatch: pytest.MonkeyPatch) -> Callable[..., FakeNgrok]:
    from pyngrok import ngrok

    def install(error: Exception | None = None) -> FakeNgrok:
        fake = FakeNgrok(error)
        monkeypatch.setattr(ngrok, "connect", fake.connect)
        monkeypatch.setattr(ngrok, "disconnect", fake.disconnect)
        return fake

    return install


def test_ngrok_opens_an_http_tunnel_with_the_token(fake_ngrok: Callable[..., FakeNgrok]) -> None:
    fake = fake_ngrok()
    tunnel = open_tunnel("ngrok", 8765, ngrok_token="tok_123", basic_auth="user:password1")
    assert tunnel.public_url == "https://ab12.ngrok-free.app"
    (call,) = fake.connected
    assert (call["addr"], call["proto"], call["basic_auth"]) == ("8765", "http", ["user:password1"])
    assert call["config"].auth_token == "tok_123"
    assert call["config"].start_new_session is True  # the agent outlives the kernel
    tunnel.close()
    tunnel.close()
    assert fake.disconnected == ["https://ab12.ngrok-free.app"]


def test_ngrok_failures_are_backend_unavailable_without_the_token(
    fake_ngrok: Callable[..., FakeNgrok],
) -> None:
    from pyngrok.exception import PyngrokNgrokError

    fake_ngrok(PyngrokNgrokError("ERR_NGROK_105: authtoken tok_123 is invalid"))
    with pytest.raises(BackendUnavailable, match="tunnel could not be opened") as caught:
        open_tunnel("ngrok", 8765, ngrok_token="tok_123")
    assert "tok_123" not in caught.value.message
    assert "ERR_NGROK_105" in caught.value.message


def test_any_connector_can_stand_in_for_pyngrok() -> None:
    closed: list[bool] = []

    def connector(port: int, token: str, basic_auth: str | None) -> tuple[str, Callable[[], None]]:
        return f"https://tunnel.example/{port}", lambda: closed.append(True)

    tunnel = open_tunnel("ngrok", 9000, ngrok_token="t", connector=connector)
    assert tunnel.public_url == "https://tunnel.example/9000"
    tunnel.close()
    assert closed == [True]


def test_a_second_ngrok_agent_on_one_token_is_reported_as_such() -> None:
    def refused(port: int, token: str, basic_auth: str | None) -> Any:
        raise RuntimeError(f"ngrok error: Your account is limited to 1 simultaneous ngrok agent "
                           f"sessions. ERR_NGROK_108 (token {token})")

    with pytest.raises(BackendUnavailable, match="ERR_NGROK_108") as caught:
        open_tunnel("ngrok", 8000, ngrok_token="tok-secret", connector=refused)
    assert caught.value.details["reason"] == "ERR_NGROK_108"
    assert "tok-secret" not in caught.value.message
