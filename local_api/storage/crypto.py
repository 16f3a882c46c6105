"""Secrets at rest (refresh tokens, ngrok tokens, worker secrets): Fernet, key from settings."""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken
from flask import Flask, current_app

from bridge.config import Settings
from bridge.errors import BridgeError
from local_api.storage.secrets_store import load_or_create


class SecretBox:
    """Encrypt and decrypt short secrets; the key never leaves this object."""

    def __init__(self, key_material: str) -> None:
        # Any string works as BRIDGE_SECRET_KEY: it is stretched to Fernet's 32-byte key.
        digest = hashlib.sha256(key_material.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise BridgeError(
                "A stored secret cannot be decrypted: BRIDGE_SECRET_KEY changed or the key "
                "file was replaced"
            ) from None

    def __repr__(self) -> str:
        return "SecretBox(<hidden>)"


def box() -> SecretBox:
    return current_app.extensions["secret_box"]  # type: ignore[no-any-return]


def init_app(app: Flask) -> None:
    settings: Settings = app.config["SETTINGS"]
    material = settings.secret_key or load_or_create(settings.home / "secret.key")
    app.extensions["secret_box"] = SecretBox(material)
