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

In memory the vocabulary is not a ``dict`` of strings (100k n-grams cost ~25 MB of Python objects in every
process that loads the classifier) but one sorted ``uint64`` key per n-gram (:func:`ngram_keys`: up to three
code points of 21 bits each) and the n-gram's index, looked up with ``searchsorted``; the coefficients stay in
the file's float32 and are widened to float64 per looked-up row, which gives the same float64 values as a
float64 copy of the table. Scores are bit-identical to the dict-and-float64 form (same features in the same
order, same arithmetic), at ~5 MB instead of ~29 MB.

Errors: :class:`LinearModelError` (a :class:`moderation.types.ClassifierError`) for a missing or bad file.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from moderation.types import ClassifierError

__all__ = ["LINEAR_FILE", "MAX_NGRAM", "LinearModelError", "LinearScorer", "char_ngrams", "ngram_keys"]

LINEAR_FILE = "linear.npz"
#: characters per window for long texts (about the transformer's 256-token window of Chinese text)
WINDOW_CHARS = 256
#: the longest n-gram a ``uint64`` key holds: three code points of :data:`_BITS` bits each
MAX_NGRAM = 3
_BITS = 21  # code points + 1 are 1..0x110000 < 2**21; 0 marks an empty slot, so n-grams of any length differ
_WS = re.compile(r"\s+")
# 1 + log(count), the sublinear term frequency, computed with math.log as before (numpy's vectorised log may
# round differently in the last bit); counts beyond the table are computed one by one.
_TF = np.array([0.0] + [1.0 + math.log(c) for c in range(1, 1025)])


class LinearModelError(ClassifierError):
    """The linear model file is missing, malformed, or does not reproduce its training-time scores."""


def char_ngrams(text: str, lo: int = 1, hi: int = 3) -> list[str]:
    """The character n-grams (``lo``..``hi``) of ``text`` lower-cased with whitespace runs collapsed.

    Used as scikit-learn's ``analyzer`` at training time; :class:`LinearScorer` computes the keys of exactly
    these n-grams, in this order, without making the strings (``_text_keys``, checked against this function by
    the tests), so the two cannot drift apart.
    """
    t = _WS.sub(" ", text.lower())
    n = len(t)
    return [t[i : i + k] for k in range(lo, hi + 1) for i in range(n - k + 1)]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _code_points(text: str) -> np.ndarray:
    """The code points of ``text`` (lone surrogates included, as Python's ``str`` holds them)."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def _pack(slots: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Keys from ``slots`` ([n, MAX_NGRAM] code points) of which the first ``lengths`` count."""
    keys = np.zeros(len(slots), dtype=np.uint64)
    for j in range(slots.shape[1]):
        used = j < lengths
        keys[used] |= (slots[used, j].astype(np.uint64) + 1) << np.uint64(_BITS * j)
    return keys


def ngram_keys(vocab: Sequence[str] | np.ndarray) -> np.ndarray:
    """One ``uint64`` per n-gram of ``vocab``: code point ``j`` (plus one) in bits ``21 j`` to ``21 j + 20``.

    Distinct strings of up to :data:`MAX_NGRAM` characters get distinct keys (an empty slot is 0, a used one
    never is). A numpy string array is read in place, with numpy's own meaning of its entries (trailing NULs
    are padding), which is what ``str()`` of each entry gives; longer strings raise :class:`LinearModelError`.
    """
    if isinstance(vocab, np.ndarray) and vocab.dtype.kind == "U":
        width = vocab.dtype.itemsize // 4
        slots = np.ascontiguousarray(vocab).view(np.uint32).reshape(len(vocab), width)
        # an entry's length: up to its last non-NUL code point (NULs inside an entry are characters)
        lengths = np.where(slots != 0, np.arange(1, width + 1), 0).max(axis=1, initial=0)
    else:
        items = [str(g) for g in vocab]
        lengths = np.fromiter(map(len, items), dtype=np.int64, count=len(items))
        width = int(lengths.max(initial=0))
        flat = _code_points("".join(items))
        slots = np.zeros((len(items), width), dtype=np.uint32)
        rows = np.repeat(np.arange(len(items)), lengths)
        cols = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        slots[rows, cols] = flat
    if len(lengths) and int(lengths.max()) > MAX_NGRAM:
        raise LinearModelError(f"n-grams longer than {MAX_NGRAM} characters are not supported")
    return _pack(slots[:, :MAX_NGRAM], lengths)


def _text_keys(text: str, lo: int, hi: int) -> np.ndarray:
    """The keys of ``char_ngrams(text, lo, hi)``, in the same order (by length, then by position)."""
    cp = _code_points(_WS.sub(" ", text.lower())).astype(np.uint64) + 1
    parts = []
    for k in range(lo, hi + 1):
        n = len(cp) - k + 1
        if n <= 0:
            continue
        key = cp[:n].copy()
        for j in range(1, k):
            key |= cp[j : j + n] << np.uint64(_BITS * j)
        parts.append(key)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)


class LinearScorer:
    """Per-category probabilities from a char n-gram TF-IDF + logistic regression model."""

    def __init__(
        self,
        vocab: Sequence[str] | np.ndarray,
        idf: np.ndarray,
        coef: np.ndarray,
        intercept: np.ndarray,
        categories: Sequence[str],
        ngram: tuple[int, int] = (1, 3),
    ) -> None:
        self.ngram = (int(ngram[0]), int(ngram[1]))
        if not 1 <= self.ngram[0] <= self.ngram[1] <= MAX_NGRAM:
            raise LinearModelError(f"n-gram range {self.ngram}: lengths 1 to {MAX_NGRAM} are supported")
        keys = ngram_keys(vocab)
        #: the vocabulary's keys sorted, and for each the n-gram's index (its column of the model)
        self.order = np.argsort(keys, kind="stable").astype(np.int32)
        self.keys = keys[self.order]
        if len(self.keys) > 1 and not bool((self.keys[1:] != self.keys[:-1]).all()):
            raise LinearModelError("the vocabulary repeats an n-gram")
        self.idf = np.asarray(idf, dtype=np.float64)
        # transposed once: a text's n-grams select rows, contiguous in memory. float32 (the file's dtype) is
        # kept as it is and widened per selected row: the same float64 values as a widened table, half the bytes
        coef = np.asarray(coef)
        self.coef_t = np.ascontiguousarray(coef.T, dtype=coef.dtype if coef.dtype == np.float32 else np.float64)
        self.intercept = np.asarray(intercept, dtype=np.float64)
        self.categories = tuple(categories)
        if self.coef_t.shape != (len(self.keys), len(self.categories)) or self.idf.shape != (len(self.keys),):
            raise LinearModelError(
                f"inconsistent shapes: vocab {len(self.keys)}, idf {self.idf.shape}, coef {self.coef_t.shape[::-1]}"
            )

    def __len__(self) -> int:
        """The vocabulary size."""
        return len(self.keys)

    def vocabulary(self) -> list[str]:
        """The n-grams in index order (decoded from the keys; :meth:`save` writes them)."""
        keys = np.empty_like(self.keys)
        keys[self.order] = self.keys
        mask = np.uint64((1 << _BITS) - 1)
        slots = np.stack([(keys >> np.uint64(_BITS * j)) & mask for j in range(MAX_NGRAM)], axis=1)
        cps = np.where(slots > 0, slots - np.uint64(1), 0).astype(np.uint32)
        lengths = (slots > 0).sum(axis=1)
        return [cps[i, : lengths[i]].tobytes().decode("utf-32-le", "surrogatepass") for i in range(len(keys))]

    def nbytes(self) -> int:
        """Bytes of the arrays the scorer holds (the whole model: nothing else grows with the vocabulary)."""
        return sum(a.nbytes for a in (self.keys, self.order, self.idf, self.coef_t, self.intercept))

    def features(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """The L2-normalised TF-IDF vector of ``text`` as (column indices, values).

        The stored n-grams of ``text`` in order of first occurrence in :func:`char_ngrams` (the order the
        former ``Counter`` gave, so sums run in the same order), with their sublinear tf times idf.
        """
        grams = _text_keys(text, *self.ngram)
        pos = np.searchsorted(self.keys, grams)
        pos[pos == len(self.keys)] = 0  # past the end: not in the vocabulary (the comparison below says so)
        hit = self.keys[pos] == grams if len(self.keys) else np.zeros(len(grams), dtype=bool)
        if not hit.any():
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        found = self.order[pos[hit]].astype(np.int64)
        uniq, first, counts = np.unique(found, return_index=True, return_counts=True)
        by_first = np.argsort(first)
        idx, counts = uniq[by_first], counts[by_first]
        if counts.max() < len(_TF):
            tf = _TF[counts]
        else:
            tf = np.fromiter((1.0 + math.log(c) for c in counts.tolist()), dtype=np.float64, count=len(counts))
        val = tf * self.idf[idx]
        return idx, val / np.sqrt(val @ val)

    def predict_array(self, texts: Sequence[str]) -> np.ndarray:
        """``[len(texts), len(categories)]`` probabilities."""
        out = np.empty((len(texts), len(self.categories)))
        for row, text in enumerate(texts):
            idx, val = self.features(text)
            out[row] = self.intercept + val @ self.coef_t[idx].astype(np.float64, copy=False)
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
        np.savez_compressed(
            path,
            vocab=np.array(self.vocabulary(), dtype=str),
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
                data["vocab"],  # read as an array: no Python string per n-gram, even for a moment
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
