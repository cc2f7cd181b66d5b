"""Secrets at rest: account credentials (and cached platform tokens) encrypted with keys from the secret key.

Keys are derived with HKDF-SHA256 (a key-derivation function made for this, unlike a bare hash), one per
purpose, and combined with ``MultiFernet``: the first key encrypts; every key (``MATRIX_SECRET_KEY``, then each
of ``MATRIX_OLD_SECRET_KEYS``, then the earlier sha256 derivation of each, which installations before HKDF
wrote with) decrypts. So a key is rotated without losing anything: set the new key, move the old one to
``MATRIX_OLD_SECRET_KEYS``, run ``matrix secrets rotate`` (re-encrypts every stored secret with the new key),
then drop the old one.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from core.errors import ConfigError
from core.settings import Settings, get_settings

CREDENTIALS = b"media-matrix credentials v1"


def derive_key(secret: str, purpose: bytes = CREDENTIALS) -> bytes:
    """A Fernet key for ``purpose`` derived from ``secret`` with HKDF-SHA256 (any length of secret works)."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"media-matrix", info=purpose)
    return base64.urlsafe_b64encode(hkdf.derive(secret.encode()))


def _legacy_key(secret: str) -> bytes:
    # How keys were made before HKDF: still accepted for decryption, so old rows can be rotated.
    return base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest())


def secret_keys(settings: Settings | None = None) -> list[str]:
    """The secret key followed by the earlier keys still accepted for decryption."""
    settings = settings or get_settings()
    olds = [k.strip() for k in settings.old_secret_keys.split(",") if k.strip()]
    return [settings.secret_key, *olds]


def fernet(settings: Settings | None = None, purpose: bytes = CREDENTIALS) -> MultiFernet:
    """Encrypt with the current key; decrypt with the current key, the old ones, and their legacy forms."""
    keys = secret_keys(settings)
    derived = [derive_key(k, purpose) for k in keys]
    legacy = [_legacy_key(k) for k in keys] if purpose == CREDENTIALS else []
    return MultiFernet([Fernet(k) for k in [*derived, *legacy]])


def encrypt_credentials(credentials: dict[str, Any]) -> bytes:
    """Encrypt a credentials mapping (JSON) for storage."""
    return fernet().encrypt(json.dumps(credentials).encode())


def decrypt_credentials(blob: bytes) -> dict[str, Any]:
    """Decrypt stored credentials; a wrong ``MATRIX_SECRET_KEY`` gives a clear error."""
    try:
        return json.loads(fernet().decrypt(blob))
    except InvalidToken as exc:
        raise ConfigError(
            "cannot decrypt account credentials: MATRIX_SECRET_KEY changed? "
            "(an earlier key goes in MATRIX_OLD_SECRET_KEYS until `matrix secrets rotate` has run)"
        ) from exc


def rotate(blob: bytes) -> bytes:
    """Re-encrypt ``blob`` with the current key (it may have been written with any accepted key)."""
    try:
        return fernet().rotate(blob)
    except InvalidToken as exc:
        raise ConfigError("a stored secret cannot be decrypted with any configured key") from exc
