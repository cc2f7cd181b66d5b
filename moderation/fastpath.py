"""The compiled loops of the lexicon path, where they were built; the numpy path everywhere else.

``moderation/_lexfast.c`` holds C twins of the per-character loops that dominate the lexicon path on batches:
the normaliser (:func:`moderation.normalize._normalize_vector`), the pre-check gates
(``moderation.lexicon._Gate``) and the pinyin windows (:func:`moderation.normalize._latin_windows_np`). It is an
optional extension: an install without a C compiler simply runs the numpy code, which gives the same results
(``tests/unit/test_moderation_compiled.py`` runs both on the same texts and compares every field).

:func:`compiled` is what the normaliser and the lexicon ask. :func:`disabled` turns the compiled loops off
and :func:`using` runs a given build of them, for the duration of a ``with`` block and process-wide (for the
differential tests, which build the extension themselves where the install did not, and for
``bench/moderation.py``, which measures both paths; not for use while other threads screen).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

__all__ = ["available", "compiled", "disabled", "using"]


def _load() -> ModuleType | None:
    try:
        return importlib.import_module("moderation._lexfast")
    except ImportError:  # not built (no compiler at install): the numpy path runs
        return None


_LIB = _load()
_enabled = True
_override: ModuleType | None = None


def available() -> bool:
    """True when the extension was built and imported (whether or not :func:`disabled` is in force)."""
    return _LIB is not None


def compiled() -> ModuleType | None:
    """The extension module, or ``None`` when it is absent or turned off."""
    if not _enabled:
        return None
    return _override if _override is not None else _LIB


@contextmanager
def disabled() -> Iterator[None]:
    """Run the numpy path inside the block (the reference the compiled loops are compared with)."""
    global _enabled
    before = _enabled
    _enabled = False
    try:
        yield
    finally:
        _enabled = before


@contextmanager
def using(lib: ModuleType) -> Iterator[None]:
    """Run the compiled path with ``lib`` (a build of ``moderation/_lexfast.c``) inside the block."""
    global _override, _enabled
    before = _override, _enabled
    _override, _enabled = lib, True
    try:
        yield
    finally:
        _override, _enabled = before
