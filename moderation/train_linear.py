"""Train the linear second scorer and choose how it joins the transformer: ``python -m moderation.train_linear``.

Protocol (every choice inside the training data; no dev split is read):

1. Texts are what the engine's classifier reads (:func:`moderation.scorecache.engine_views`): COLD, SWSR, the
   lexicon-derived sentences and the team's category families (:func:`moderation.category_data.all_examples`),
   plus **disguised copies** of half the train texts (:func:`moderation.disguise.training_copies`: full,
   spaced or mixed pinyin, initials, sound-alikes of their insult and category keywords, or of a random word
   where they have none — positives and negatives alike, so pinyin alone is no evidence). A copy shares its
   original's cross-validation fold, and out-of-fold figures are taken on the originals only.
2. Char 1-3-gram TF-IDF (``sublinear_tf``, ``min_df=2``, the ``--max-features`` most frequent n-grams) +
   one logistic regression per category, on the **train** split (COLD train minus its select slice, SWSR
   train ids, derived train). ``C`` is chosen by 3-fold cross-validation on train (selection score of the
   out-of-fold scores at threshold 0.5; the vocabulary is fitted once on all train texts — unsupervised).
3. On the **select** slice (held out from both models' fitting; part of COLD train, SWSR train ids, the
   derived data and the team families), the transformer weight ``w`` of ``w * transformer + (1 - w) * linear``
   is chosen **per category** from :data:`WEIGHTS` by 2-fold cross-fitting: thresholds picked on one half,
   scored on the other, both ways (``abuse`` by the COLD-select 2-class macro-F1, the others by their F1 on
   the category rows; ties go to the weight nearest 0.5). ``w = 1`` is the transformer alone and ``w = 0``
   the linear model alone, so a category averages the two only where that estimate says it beats each.
4. Per-category thresholds for the chosen ``w`` on the whole select slice: ``abuse`` maximises the 2-class
   macro-F1 on the COLD + SWSR select rows (the issue's measure; a higher threshold than max-F1 of the
   positive class when that flags fewer harmless texts), the others the F1 on all select rows (COLD and
   SWSR rows are their negatives); ties go to the middle of the best plateau.
5. Writes ``linear.npz`` (:mod:`moderation.linear`) and the ``"combine"`` entry of ``classifier.json``
   (file, version, weight, thresholds, and every figure behind the choice).

scikit-learn is needed here only; the run time reads the arrays.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from moderation.category_data import all_examples, disguise_keywords
from moderation.classifier import CONFIG_FILE, DEFAULT_MODEL_DIR, MODEL_CATEGORIES, Classifier
from moderation.dataset import DEFAULT_DATA_ROOT, Example, by_split
from moderation.disguise import load_keywords, training_copies
from moderation.linear import LINEAR_FILE, LinearScorer, char_ngrams
from moderation.scorecache import DEFAULT_CACHE_DIR, TransformerCache, engine_views

SEED = 13
C_GRID = (4.0, 16.0, 32.0)
WEIGHTS = (1.0, 0.75, 0.5, 0.25, 0.0)
GRID = np.round(np.arange(0.05, 0.951, 0.05), 2)
ABUSE = MODEL_CATEGORIES.index("abuse")


def log(msg: str) -> None:
    """Progress with a timestamp."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _f1(y: np.ndarray, p: np.ndarray) -> float:
    tp = float((y & p).sum())
    fp = float((~y & p).sum())
    fn = float((y & ~p).sum())
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def _macro2(y: np.ndarray, p: np.ndarray) -> float:
    return (_f1(y, p) + _f1(~y, ~p)) / 2


def _rows(examples: Sequence[Example]) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks: rows scored for abuse (COLD, SWSR) and for the other categories (derived, team)."""
    src = np.array([e.source for e in examples]).astype(str)
    return np.isin(src, ["cold", "swsr"]), np.char.startswith(src, "derived") | np.char.startswith(src, "team")


def _plateau_middle(vals: Sequence[float]) -> float:
    """The grid threshold in the middle of the best values (ties are common on the easy derived rows, and the
    lowest tied threshold would flag the most real text)."""
    best = max(vals)
    tied = [i for i, v in enumerate(vals) if v >= best - 1e-12]
    return float(GRID[tied[len(tied) // 2]]) if best > 0 else 0.5


def choose_thresholds(examples: Sequence[Example], y: np.ndarray, s: np.ndarray) -> dict[str, float]:
    """Per category, the grid threshold that maximises the objective of step 4 of the module docstring:
    ``abuse`` the 2-class macro-F1 on the COLD + SWSR rows, the others their F1 on every row (the COLD and
    SWSR rows are their negatives, as in training, so flags on real harmless text count against them)."""
    real, _ = _rows(examples)
    out = {}
    for j, cat in enumerate(MODEL_CATEGORIES):
        if cat == "abuse":
            vals = [_macro2(y[real, j], s[real, j] >= t) for t in GRID]
        else:
            vals = [_f1(y[:, j], s[:, j] >= t) for t in GRID]
        out[cat] = _plateau_middle(vals)
    return out


def selection_score(examples: Sequence[Example], y: np.ndarray, s: np.ndarray, thresholds: dict[str, float]) -> dict:
    """COLD/SWSR select 2-class macro-F1 (abuse), derived per-category F1, and their mean as ``score``."""
    t = np.array([thresholds[c] for c in MODEL_CATEGORIES])
    p = s >= t
    src = np.array([e.source for e in examples])
    real, derived = _rows(examples)
    cold, swsr = src == "cold", src == "swsr"
    per_cat = {c: _f1(y[derived, j], p[derived, j]) for j, c in enumerate(MODEL_CATEGORIES) if c != "abuse"}
    per_cat["abuse"] = _f1(y[real, ABUSE], p[real, ABUSE])
    rep = {
        "cold_macro_f1": _macro2(y[cold, ABUSE], p[cold, ABUSE]),
        "swsr_macro_f1": _macro2(y[swsr, ABUSE], p[swsr, ABUSE]),
        "cold_harmless_flagged": float(p[cold & ~y[:, ABUSE]].any(axis=1).mean()),
        "per_category_f1": per_cat,
        "category_macro_f1": float(np.mean(list(per_cat.values()))),
    }
    rep["score"] = (rep["cold_macro_f1"] + rep["category_macro_f1"]) / 2
    return rep


def fit_sklearn(texts: Sequence[str], y: np.ndarray, c: float, max_features: int, vectorizer=None) -> tuple:
    """Fit TF-IDF (unless ``vectorizer`` is given, already fitted) + one logistic regression per category;
    returns ``(vectorizer, models)``."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = vectorizer or TfidfVectorizer(
        analyzer=char_ngrams, sublinear_tf=True, min_df=2, max_features=max_features, dtype=np.float64
    ).fit(texts)
    x = vec.transform(texts)
    models = [LogisticRegression(C=c, solver="liblinear", max_iter=1000).fit(x, y[:, j]) for j in range(y.shape[1])]
    return vec, models


def to_scorer(vec, models, categories: Sequence[str] = MODEL_CATEGORIES) -> LinearScorer:
    """The fitted scikit-learn objects as a :class:`LinearScorer` (coefficients in float32, as stored, so the
    scorer built here is exactly the one loaded later)."""
    vocab = sorted(vec.vocabulary_, key=vec.vocabulary_.__getitem__)
    coef = np.array([m.coef_[0] for m in models], dtype=np.float32)
    intercept = np.array([m.intercept_[0] for m in models])
    return LinearScorer(vocab, vec.idf_, coef, intercept, categories, (1, 3))


def fit_scorer(texts: Sequence[str], y: np.ndarray, c: float, max_features: int, vectorizer=None) -> LinearScorer:
    """:func:`fit_sklearn` then :func:`to_scorer`."""
    return to_scorer(*fit_sklearn(texts, y, c, max_features, vectorizer))


def cross_validate(
    texts: Sequence[str], examples: Sequence[Example], y: np.ndarray, max_features: int, origin: np.ndarray
) -> dict:
    """Out-of-fold selection score at threshold 0.5 for each ``C`` in :data:`C_GRID` (3 folds on train).

    ``origin[i]`` is the row that row ``i`` copies (itself for an original): a disguised copy lives in its
    original's fold, and the score is taken on the originals (``examples`` are the originals, in order)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(
        analyzer=char_ngrams, sublinear_tf=True, min_df=2, max_features=max_features, dtype=np.float64
    ).fit(texts)
    folds = (np.random.default_rng(SEED).permutation(len(examples)) % 3)[origin]
    n = len(examples)
    half = {c: 0.5 for c in MODEL_CATEGORIES}
    out = {}
    for c in C_GRID:
        oof = np.zeros((n, y.shape[1]))
        for k in range(3):
            tr, te = np.flatnonzero(folds != k), np.flatnonzero(folds[:n] == k)
            scorer = fit_scorer([texts[i] for i in tr], y[tr], c, max_features, vec)
            oof[te] = scorer.predict_array([texts[i] for i in te])
        out[str(c)] = selection_score(examples, y[:n].astype(bool), oof, half)
        log(f"CV C={c}: score {out[str(c)]['score']:.4f} (COLD macro-F1 {out[str(c)]['cold_macro_f1']:.4f})")
    return out


def cross_fit_weights(examples: Sequence[Example], y: np.ndarray, st: np.ndarray, sl: np.ndarray) -> dict:
    """For each weight, the 2-fold cross-fitted selection score on the select slice and its per-category F1
    (step 3)."""
    halves = np.random.default_rng(SEED).permutation(len(examples)) % 2
    out = {}
    for w in WEIGHTS:
        s = w * st + (1 - w) * sl
        parts = []
        for k in (0, 1):
            a, b = np.flatnonzero(halves == k), np.flatnonzero(halves != k)
            thr = choose_thresholds([examples[i] for i in a], y[a], s[a])
            parts.append(selection_score([examples[i] for i in b], y[b], s[b], thr))
        out[str(w)] = {
            key: float(np.mean([p[key] for p in parts]))
            for key in ("score", "cold_macro_f1", "swsr_macro_f1", "category_macro_f1", "cold_harmless_flagged")
        }
        out[str(w)]["per_category_f1"] = {
            c: float(np.mean([p["per_category_f1"][c] for p in parts])) for c in MODEL_CATEGORIES
        }
        log(f"select cross-fit w={w}: {json.dumps(out[str(w)])}")
    return out


def choose_weights(cross_fit: dict) -> dict[str, float]:
    """Per category, the weight with the best cross-fitted figure (``abuse``: COLD-select 2-class macro-F1;
    the others: their F1 on the category rows); ties go to the weight nearest 0.5, the shipped default."""
    out = {}
    for cat in MODEL_CATEGORIES:

        def value(w: str, cat: str = cat) -> float:
            r = cross_fit[w]
            return r["cold_macro_f1"] if cat == "abuse" else r["per_category_f1"][cat]

        best = max(value(w) for w in cross_fit)
        tied = [float(w) for w in cross_fit if value(w) >= best - 1e-9]
        out[cat] = min(tied, key=lambda w: (abs(w - 0.5), w))
    return out


def disguised_train(examples: Sequence[Example], data_root: Path, share: int = 2) -> tuple[list[Example], np.ndarray]:
    """Disguised copies of one in ``share`` train examples (by a stable hash of the text) and, per copy, the
    index of its original (see step 1)."""
    keywords = sorted(set(load_keywords(data_root)) | set(disguise_keywords()))
    picked = [
        i
        for i, e in enumerate(examples)
        if int(hashlib.sha1(f"copy{e.text}".encode(), usedforsecurity=False).hexdigest()[:8], 16) % share == 0
    ]
    copies = training_copies([examples[i].text for i in picked], keywords)
    out = [
        Example(text, examples[picked[k]].labels, examples[picked[k]].source, "train", {"disguise": style})
        for k, style, text in copies
    ]
    return out, np.array([picked[k] for k, _, _ in copies], dtype=np.int64)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line entry point (``python -m moderation.train_linear --help``)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    ap.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    ap.add_argument("--score-cache", type=Path, default=DEFAULT_CACHE_DIR, help="transformer score cache")
    ap.add_argument("--max-features", type=int, default=100_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--c", type=float, default=None, help="skip the cross-validation and use this C")
    ap.add_argument("--no-disguise", action="store_true", help="train without the disguised copies")
    args = ap.parse_args(argv)

    examples = all_examples(args.data_root)
    train_ex, select_ex = by_split(examples, "train"), by_split(examples, "select")
    copies, copy_of = (
        ([], np.zeros(0, dtype=np.int64)) if args.no_disguise else disguised_train(train_ex, args.data_root)
    )
    log(f"{len(train_ex)} train (+ {len(copies)} disguised copies), {len(select_ex)} select examples")
    train_x = engine_views([e.text for e in [*train_ex, *copies]])
    select_x = engine_views([e.text for e in select_ex])
    y_train = np.array([e.target() for e in [*train_ex, *copies]], dtype=np.int64)
    y_sel = np.array([e.target() for e in select_ex], dtype=bool)
    origin = np.concatenate([np.arange(len(train_ex)), copy_of])

    if args.c is None:
        cv = cross_validate(train_x, train_ex, y_train, args.max_features, origin)
        best_c = float(max(cv, key=lambda c: cv[c]["score"]))
    else:  # a re-run of the later steps: keep the figures of the cross-validation that chose C
        best_c = args.c
        old = json.loads((args.model_dir / CONFIG_FILE).read_text(encoding="utf-8"))
        cv = (old.get("combine") or old.get("linear_selection") or {}).get("cv_train", {})
    log(f"chosen C={best_c}")
    scorer = fit_scorer(train_x, y_train, best_c, args.max_features)

    import torch

    torch.set_num_threads(args.threads)
    clf = Classifier.load(args.model_dir, linear=False)
    mode = "int8" if clf.quantized else "fp32"
    cache = TransformerCache(
        args.score_cache / f"{clf.transformer_version}-{mode}.npz", len(MODEL_CATEGORIES), clf.transformer_scores
    )
    st = cache.scores(select_x, progress=lambda a, b: log(f"transformer on select {a}/{b}"))
    sl = scorer.predict_windows(select_x)  # as the classifier combines them (long texts by windows)
    weights = cross_fit_weights(select_ex, y_sel, st, sl)
    per_cat = choose_weights(weights)
    best_w = np.array([per_cat[c] for c in MODEL_CATEGORIES])
    log(f"chosen transformer weights {per_cat}")
    s = best_w * st + (1 - best_w) * sl
    thresholds = choose_thresholds(select_ex, y_sel, s)

    digest = hashlib.sha256(scorer.coef_t.astype(np.float32).tobytes()).hexdigest()[:8]
    version = f"lin-c{best_c:g}-{digest}"
    check = engine_views([e.text for e in select_ex[:: max(1, len(select_ex) // 40)]])
    t_check = cache.scores(check)
    entry = {
        "file": LINEAR_FILE,
        "version": version,
        # the average's overall weight (kept for readers of the older entry) and the per-category ones
        "transformer_weight": float(best_w.mean()),
        "transformer_weights": per_cat,
        "disguised_copies": len(copies),
        "thresholds": thresholds,
        "transformer_mode": mode,
        "protocol": "C by 3-fold CV on train (+ disguised copies); per-category weight by 2-fold cross-fitting "
        "on select; thresholds on select",
        "max_features": args.max_features,
        "cv_train": cv,
        "select_cross_fit": weights,
        "thresholds_linear": choose_thresholds(select_ex, y_sel, sl),
        "thresholds_transformer": choose_thresholds(select_ex, y_sel, st),
        "select_fitted": selection_score(select_ex, y_sel, s, thresholds),
        # training-time scores of a few texts: the tests recompute them from the shipped files
        "check": {
            "texts": check,
            "transformer": t_check.astype(float).round(6).tolist(),
            "scores": (best_w * t_check.astype(float).round(6) + (1 - best_w) * scorer.predict_windows(check)).tolist(),
        },
    }
    meta_path = args.model_dir / CONFIG_FILE
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if best_w.min() >= 1.0:
        # the transformer alone is best: nothing to ship, the figures are kept for the model card
        meta.pop("combine", None)
        meta["linear_selection"] = entry | {"check": None}
        (args.model_dir / LINEAR_FILE).unlink(missing_ok=True)
        log("the transformer alone scores best on select: the linear scorer is not shipped")
    else:
        scorer.save(args.model_dir / LINEAR_FILE, check)
        meta["combine"] = entry
        log(f"wrote {args.model_dir / LINEAR_FILE} and the combine entry of {meta_path} ({version})")
    meta_path.write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
