"""Account credentials, encrypted at rest with a Fernet key derived from ``MATRIX_SECRET_KEY``."""

from __future__ import annotations

import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from publisher.config import get_settings
from publisher.errors import PublisherError


def encrypt_credentials(credentials: dict[str, Any]) -> bytes:
    """Encrypt a credentials mapping (JSON) for storage."""
    return Fernet(get_settings().fernet_key).encrypt(json.dumps(credentials).encode())


def decrypt_credentials(blob: bytes) -> dict[str, Any]:
    """Decrypt stored credentials; a wrong ``MATRIX_SECRET_KEY`` gives a clear error."""
    try:
        return json.loads(Fernet(get_settings().fernet_key).decrypt(blob))
    except InvalidToken as exc:
        raise PublisherError("cannot decrypt account credentials: MATRIX_SECRET_KEY changed?") from exc
