"""Char n-gram TF-IDF + logistic regression scorer, stored as plain arrays (numpy only at run time).

The second scorer of the classifier (:mod:`moderation.classifier` averages its probabilities with the
transformer's when ``classifier.json`` says so). It is trained by :mod:`moderation.train_linear` with
scikit-learn's ``TfidfVectorizer(analyzer=char_ngrams, sublinear_tf=True)`` and one ``LogisticRegression``
per category; this module recomputes exactly the same function from the stored arrays, so scikit-learn is a
training-time (dev) dependency only:

    x = tf-idf(text) = (1 + log count(g)) * idf[g] for every stored n-gram g of the text, then L2-normalised
    p[c] = sigmoid(coef[c] . x + intercept[c])

The file (``linear.npz``, ``allow_pickle=False``) holds ``vocab`` (n-grams, index order), ``idf``, ``coef``
(categories x vocabulary), ``intercept``, ``categories``, ``ngram`` (min, max) and ``check_texts`` /
``check_scores``: texts scored at training time, which :meth:`LinearScorer.verify` recomputes at load.

Errors: :class:`LinearModelError` (a :class:`moderation.types.ClassifierError`) for a missing or bad file.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from moderation.types import ClassifierError

__all__ = ["LINEAR_FILE", "LinearModelError", "LinearScorer", "char_ngrams"]

LINEAR_FILE = "linear.npz"
#: characters per window for long texts (about the transformer's 256-token window of Chinese text)
WINDOW_CHARS = 256
_WS = re.compile(r"\s+")


class LinearModelError(ClassifierError):
    """The linear model file is missing, malformed, or does not reproduce its training-time scores."""


def char_ngrams(text: str, lo: int = 1, hi: int = 3) -> list[str]:
    """The character n-grams (``lo``..``hi``) of ``text`` lower-cased with whitespace runs collapsed.

    Used as scikit-learn's ``analyzer`` at training time and by :class:`LinearScorer` at run time, so the two
    cannot drift apart.
    """
    t = _WS.sub(" ", text.lower())
    n = len(t)
    return [t[i : i + k] for k in range(lo, hi + 1) for i in range(n - k + 1)]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


class LinearScorer:
    """Per-category probabilities from a char n-gram TF-IDF + logistic regression model."""

    def __init__(
        self,
        vocab: Sequence[str],
        idf: np.ndarray,
        coef: np.ndarray,
        intercept: np.ndarray,
        categories: Sequence[str],
        ngram: tuple[int, int] = (1, 3),
    ) -> None:
        self.index = {g: i for i, g in enumerate(vocab)}
        self.idf = np.asarray(idf, dtype=np.float64)
        # transposed once: a text's n-grams select rows, contiguous in memory
        self.coef_t = np.ascontiguousarray(np.asarray(coef, dtype=np.float64).T)
        self.intercept = np.asarray(intercept, dtype=np.float64)
        self.categories = tuple(categories)
        self.ngram = (int(ngram[0]), int(ngram[1]))
        if self.coef_t.shape != (len(self.index), len(self.categories)) or self.idf.shape != (len(self.index),):
            raise LinearModelError(
                f"inconsistent shapes: vocab {len(self.index)}, idf {self.idf.shape}, coef {self.coef_t.shape[::-1]}"
            )

    def features(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """The L2-normalised TF-IDF vector of ``text`` as (column indices, values)."""
        counts = Counter(g for g in char_ngrams(text, *self.ngram) if g in self.index)
        if not counts:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        idx = np.fromiter((self.index[g] for g in counts), dtype=np.int64, count=len(counts))
        tf = np.fromiter((1.0 + math.log(c) for c in counts.values()), dtype=np.float64, count=len(counts))
        val = tf * self.idf[idx]
        return idx, val / np.sqrt(val @ val)

    def predict_array(self, texts: Sequence[str]) -> np.ndarray:
        """``[len(texts), len(categories)]`` probabilities."""
        out = np.empty((len(texts), len(self.categories)))
        for row, text in enumerate(texts):
            idx, val = self.features(text)
            out[row] = self.intercept + val @ self.coef_t[idx]
        return _sigmoid(out)

    def predict_windows(self, texts: Sequence[str], size: int = WINDOW_CHARS, overlap: int = 64) -> np.ndarray:
        """Like :meth:`predict_array`, but a text longer than ``size`` characters is scored in overlapping
        windows and each category keeps its maximum, as the transformer does: one insult in a long article is
        not averaged away by the TF-IDF normalisation. Texts up to ``size`` characters score as they were
        trained (every training text but a few long SWSR comments)."""
        out = self.predict_array(texts)
        step = size - overlap
        for i, text in enumerate(texts):
            if len(text) > size:
                parts = [text[k : k + size] for k in range(0, len(text) - overlap, step)]
                out[i] = self.predict_array(parts).max(axis=0)
        return out

    def predict(self, texts: list[str]) -> list[dict[str, float]]:
        """Per text, category -> probability (the engine's classifier protocol)."""
        return [dict(zip(self.categories, map(float, row), strict=True)) for row in self.predict_windows(texts)]

    # -- files ---------------------------------------------------------------------------------------------
    def save(self, path: Path, check_texts: Sequence[str]) -> None:
        """Write the arrays and the scores of ``check_texts`` (recomputed by :meth:`verify` at load)."""
        vocab = sorted(self.index, key=self.index.__getitem__)
        np.savez_compressed(
            path,
            vocab=np.array(vocab, dtype=str),
            idf=self.idf.astype(np.float64),
            coef=self.coef_t.T.astype(np.float32),
            intercept=self.intercept.astype(np.float64),
            categories=np.array(self.categories, dtype=str),
            ngram=np.array(self.ngram, dtype=np.int64),
            check_texts=np.array(list(check_texts), dtype=str),
            check_scores=self.predict_array(list(check_texts)),
        )

    @classmethod
    def load(cls, path: Path, verify: bool = True) -> LinearScorer:
        """Read ``path`` (offline: nothing else is needed); ``verify`` recomputes the stored check scores."""
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
            scorer = cls(
                [str(g) for g in data["vocab"]],
                data["idf"],
                data["coef"],
                data["intercept"],
                [str(c) for c in data["categories"]],
                tuple(int(v) for v in data["ngram"]),  # type: ignore[arg-type]
            )
        except (OSError, KeyError, ValueError) as exc:
            raise LinearModelError(f"cannot read the linear model {path}: {exc}") from exc
        if verify:
            scorer.verify([str(t) for t in data["check_texts"]], data["check_scores"])
        return scorer

    def verify(self, texts: Sequence[str], expected: np.ndarray, atol: float = 1e-5) -> None:
        """Raise :class:`LinearModelError` unless ``texts`` score ``expected`` (the training-time scores)."""
        got = self.predict_array(list(texts))
        if got.shape != np.shape(expected) or not np.allclose(got, expected, atol=atol, rtol=0):
            raise LinearModelError("the linear model does not reproduce its training-time scores")
