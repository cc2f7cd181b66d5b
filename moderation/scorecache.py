"""Evaluation helpers shared by ``moderation.evaluate`` and ``moderation.train_linear`` (training side only).

* :func:`engine_views` — what the engine's classifier reads for each text (:func:`moderation.engine.model_text`
  after the rules pass), so a score measured offline is the score the engine would see;
* :class:`TransformerCache` — transformer scores kept on disk under ``var/`` by the hash of the text read,
  per model version and quantisation mode, so re-running an evaluation costs minutes once and seconds after.

Errors: :class:`moderation.types.ClassifierError` from the classifier; a damaged cache file is ignored and
rebuilt (it only holds recomputable numbers).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from moderation.engine import Screener, model_text

__all__ = ["DEFAULT_CACHE_DIR", "TransformerCache", "engine_views"]

DEFAULT_CACHE_DIR = Path("var/eval-cache")


def engine_views(texts: Sequence[str], screener: Screener | None = None, chunk: int = 512) -> list[str]:
    """The classifier input the engine builds for each of ``texts`` (normalised, disguises spelled plainly)."""
    screener = screener if screener is not None else Screener(classifier=None)
    out: list[str] = []
    for i in range(0, len(texts), chunk):
        part = list(texts[i : i + chunk])
        for text, (norm_text, hits) in zip(part, screener.evidence_batch(part), strict=True):
            out.append(model_text(text, norm_text, hits))
    return out


def _key(text: str) -> bytes:
    return hashlib.sha1(text.encode("utf-8"), usedforsecurity=False).digest()


class TransformerCache:
    """Scores of one transformer (``score_fn``: texts -> ``[n, C]`` array) memoised on disk by text hash."""

    def __init__(self, path: Path, n_categories: int, score_fn: Callable[[list[str]], np.ndarray]) -> None:
        self.path = path
        self.n = n_categories
        self.score_fn = score_fn
        self.table: dict[bytes, np.ndarray] = {}
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    keys, scores = z["keys"], z["scores"]
                if scores.shape[1:] == (n_categories,):
                    self.table = {bytes(k): s for k, s in zip(keys, scores, strict=True)}
            except (OSError, KeyError, ValueError):
                self.table = {}  # recomputable: start again rather than trust a damaged file

    def scores(
        self, texts: Sequence[str], batch: int = 256, progress: Callable[[int, int], None] | None = None
    ) -> np.ndarray:
        """``[len(texts), C]`` scores; missing ones are computed in batches and the file rewritten."""
        keys = [_key(t) for t in texts]
        missing = list(dict.fromkeys(i for i, k in enumerate(keys) if k not in self.table))
        todo: dict[bytes, str] = {}
        for i in missing:
            todo.setdefault(keys[i], texts[i])
        items = list(todo.items())
        for b in range(0, len(items), batch):
            part = items[b : b + batch]
            got = self.score_fn([t for _, t in part])
            for (k, _), row in zip(part, got, strict=True):
                self.table[k] = np.asarray(row, dtype=np.float32)
            if progress:
                progress(min(b + batch, len(items)), len(items))
            if (b // batch) % 8 == 7:
                self.save()  # long runs keep what they computed if interrupted
        if items:
            self.save()
        if not texts:
            return np.zeros((0, self.n), dtype=np.float32)
        return np.stack([self.table[k] for k in keys])

    def save(self) -> None:
        """Write the table atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp.npz")
        keys = np.array(list(self.table), dtype="S20")
        scores = np.stack(list(self.table.values())) if self.table else np.zeros((0, self.n), dtype=np.float32)
        np.savez(tmp, keys=keys, scores=scores)
        os.replace(tmp, self.path)
