"""Secrets at rest: encrypted with a generated 0600 key file or BRIDGE_SECRET_KEY."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask

from bridge.errors import BridgeError
from local_api.storage.crypto import SecretBox


def test_generated_key_file_roundtrip(app: Flask, home: Path) -> None:
    key = home / "secret.key"
    assert key.stat().st_mode & 0o777 == 0o600
    secret_box = app.extensions["secret_box"]
    token = secret_box.encrypt("ngrok-token-123")
    assert "ngrok-token-123" not in token
    assert secret_box.decrypt(token) == "ngrok-token-123"
    assert "hidden" in repr(secret_box) and key.read_text() not in repr(secret_box)


def test_explicit_key_and_wrong_key(tmp_path: Path, make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app({"home": tmp_path / "h", "secret_key": "from-the-environment"})
    token = app.extensions["secret_box"].encrypt("worker-secret")
    assert not (tmp_path / "h" / "secret.key").exists()
    assert SecretBox("from-the-environment").decrypt(token) == "worker-secret"
    with pytest.raises(BridgeError, match="cannot be decrypted"):
        SecretBox("another-key").decrypt(token)
