"""Secrets at rest: account credentials (and cached platform tokens) encrypted with keys from the secret key.

Keys are derived with HKDF-SHA256 (a key-derivation function made for this, unlike a bare hash), one per
purpose, and combined with ``MultiFernet``: the first key encrypts; every key (``MATRIX_SECRET_KEY``, then each
of ``MATRIX_OLD_SECRET_KEYS``, then the earlier sha256 derivation of each, which installations before HKDF
wrote with) decrypts. So a key is rotated without losing anything: set the new key, move the old one to
``MATRIX_OLD_SECRET_KEYS``, run ``matrix secrets rotate`` (re-encrypts every stored secret with the new key),
then drop the old one.

Which key (:func:`secret_keys`):

- ``MATRIX_SECRET_KEY`` when set. Outside the embedded default (a PostgreSQL database or a Redis broker) it
  must be set, must not be the old public default ``dev-only-change-me`` and must have at least
  :data:`MIN_SECRET_KEY_CHARS` characters; otherwise every use raises :class:`ConfigError` naming the
  variable, and :func:`check_secret_key` makes the API, a worker and beat refuse to start with that line.
- On the embedded default with no ``MATRIX_SECRET_KEY``: a random key kept in ``<data_dir>/secret.key``,
  created (mode 0600) on first use, so ``make run`` needs no set-up and nothing encrypts with a public
  value. The public default follows it for *decryption only*: installations from before the key file wrote
  their credentials with it, and ``matrix secrets rotate`` moves those rows to the file key.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from core.errors import ConfigError
from core.settings import Settings, get_settings

CREDENTIALS = b"media-matrix credentials v1"
PLATFORM_TOKENS = b"media-matrix platform tokens v1"

DEFAULT_SECRET_KEY = "dev-only-change-me"  # noqa: S105 - public on purpose: only ever accepted to decrypt
"""The key every installation used before a key was required: public, so accepted only to decrypt old rows."""
MIN_SECRET_KEY_CHARS = 32
KEY_FILE = "secret.key"


def derive_key(secret: str, purpose: bytes = CREDENTIALS) -> bytes:
    """A Fernet key for ``purpose`` derived from ``secret`` with HKDF-SHA256 (any length of secret works)."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"media-matrix", info=purpose)
    return base64.urlsafe_b64encode(hkdf.derive(secret.encode()))


def _legacy_key(secret: str) -> bytes:
    # How keys were made before HKDF: still accepted for decryption, so old rows can be rotated.
    return base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest())


def secret_keys(settings: Settings | None = None) -> list[str]:
    """The key that encrypts, followed by the earlier keys still accepted for decryption (module docstring).

    Raises :class:`ConfigError` outside the embedded default when ``MATRIX_SECRET_KEY`` is missing, the public
    default or too short: no code path encrypts or decrypts with a key anybody could know.
    """
    settings = settings or get_settings()
    olds = [k.strip() for k in settings.old_secret_keys.split(",") if k.strip()]
    key = settings.secret_key.strip()
    if not key and settings.embedded:
        return [_file_key(settings.data_dir / KEY_FILE), *olds, DEFAULT_SECRET_KEY]
    if not settings.embedded:
        problem = _weakness(key)
        if problem:
            raise ConfigError(
                f"MATRIX_SECRET_KEY {problem}: outside the embedded default (SQLite database and broker) set it "
                f"to a random value of {MIN_SECRET_KEY_CHARS}+ characters, e.g. "
                "`python -c 'import secrets; print(secrets.token_urlsafe(48))'` (credentials written with the old "
                f"default stay readable with MATRIX_OLD_SECRET_KEYS={DEFAULT_SECRET_KEY} until `matrix secrets rotate`)"
            )
    return [key, *olds]


def _weakness(key: str) -> str:
    """What is wrong with ``key`` as a production key ("" for nothing)."""
    if not key:
        return "is not set"
    if key == DEFAULT_SECRET_KEY:
        return "is the public default"
    if len(key) < MIN_SECRET_KEY_CHARS:
        return f"is shorter than {MIN_SECRET_KEY_CHARS} characters"
    return ""


def check_secret_key(settings: Settings | None = None) -> None:
    """Raise :class:`ConfigError` (one line naming ``MATRIX_SECRET_KEY``) unless the secret key is usable.

    Called when the API, a worker or beat starts, so a misconfigured service stops at once rather than at its
    first credential; on the embedded default it creates the key file if there is none yet.
    """
    secret_keys(settings)


def _file_key(path: Path) -> str:
    """The embedded default's key, kept in ``path``; created with a random value (mode 0600) if missing."""
    if not path.exists():
        _create_key_file(path)
    key = path.read_text(encoding="ascii").strip()
    if len(key) < MIN_SECRET_KEY_CHARS:
        raise ConfigError(f"{path} holds no usable secret key: restore it, or set MATRIX_SECRET_KEY")
    return key


def _create_key_file(path: Path) -> None:
    # `matrix up` starts the API, a worker and beat at once, and each may be the first to need the key: the key
    # is written to a private temporary file and then hard-linked into place, which fails if another process
    # got there first, so every process ends up reading the one complete file, never a half-written one.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(secrets.token_urlsafe(48) + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process created it first: its key is the one
    finally:
        tmp.unlink(missing_ok=True)


def fernet(settings: Settings | None = None, purpose: bytes = CREDENTIALS) -> MultiFernet:
    """Encrypt with the current key; decrypt with the current key, the old ones, and their legacy forms."""
    return _multi_fernet(tuple(secret_keys(settings)), purpose)


@functools.lru_cache(maxsize=16)
def _multi_fernet(keys: tuple[str, ...], purpose: bytes) -> MultiFernet:
    # Kept per key set: a delivery decrypts an account's credentials and reads or stores tokens several times,
    # and each HKDF derivation and Fernet set-up cost more CPU than the decryption itself (profiled). The keys
    # are looked up at every call (a changed or rotated key counts at once); only what they derive is kept.
    derived = [derive_key(k, purpose) for k in keys]
    legacy = [_legacy_key(k) for k in keys] if purpose == CREDENTIALS else []
    return MultiFernet([Fernet(k) for k in [*derived, *legacy]])


def platform_token_cipher(settings: Settings | None = None) -> MultiFernet:
    """The cipher for cached platform access tokens (Redis, ``channel_tokens``): its own HKDF purpose."""
    return fernet(settings, PLATFORM_TOKENS)


def encrypt_credentials(credentials: dict[str, Any]) -> bytes:
    """Encrypt a credentials mapping (JSON) for storage."""
    return fernet().encrypt(json.dumps(credentials).encode())


def decrypt_credentials(blob: bytes, what: str = "account credentials") -> dict[str, Any]:
    """Decrypt stored credentials; a wrong ``MATRIX_SECRET_KEY`` gives a clear error naming ``what``."""
    try:
        return json.loads(fernet().decrypt(blob))
    except InvalidToken as exc:
        raise ConfigError(
            f"cannot decrypt {what}: MATRIX_SECRET_KEY changed (or, with it unset, the data directory's "
            "secret.key)? "
            "(an earlier key goes in MATRIX_OLD_SECRET_KEYS until `matrix secrets rotate` has run)"
        ) from exc


def rotate(blob: bytes, what: str = "a stored secret") -> bytes:
    """Re-encrypt ``blob`` with the current key (it may have been written with any accepted key).

    ``what`` names the value in the error (e.g. ``"the credentials of account 7"``), so an operator whose
    rotation stops knows which row was written with a key that is no longer configured.
    """
    try:
        return fernet().rotate(blob)
    except InvalidToken as exc:
        raise ConfigError(
            f"{what} cannot be decrypted with any configured key "
            "(the key it was written with goes in MATRIX_OLD_SECRET_KEYS)"
        ) from exc
