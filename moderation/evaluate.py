"""Evaluate the screen on the dev splits: ``python -m moderation.evaluate [--sets ...] [--limit N] [--json F]``.

Sets (none of them used for training, model selection or threshold choice):

* ``cold-dev`` — COLD's dev split (offensive or not);
* ``swsr-test`` — our fixed SWSR held-out ids (``moderation/data/model/swsr_split.json``; sexist or not);
* ``derived-test`` — the weakly labelled category sentences whose lexicon terms never occur in training,
  with their hard negatives (news, texts discussing the terms, anti-bias statements);
* ``team-categories`` — the team category set (``moderation/data/team_categories.tsv``): texts of the
  template families of :mod:`moderation.category_data` held out of training and selection (gambling, porn,
  fraud, ads, violence, politics, and hard negatives), scored per category; harmless rows by family;
* ``disguise`` — COLD dev offensive rows disguised by :mod:`moderation.disguise`, one copy per style: recall
  of each style beside the recall of the same rows written plainly.

Systems, side by side on every set:

* ``engine`` — what a user sees: lexicon + personal data + classifier + the default policy with the
  classifier's thresholds adopted as review thresholds (as the shipped screener does); a text counts as flagged
  when the decision is not ``pass``. For a category: flagged, with evidence of that category (a lexicon hit that is
  not a group word alone, personal data, or a model score over the category's review threshold);
* ``classifier`` — the shipped scorer alone (the transformer, averaged with the linear scorer where the
  model directory combines them) on the engine's classifier input; a category is predicted when its score
  reaches the category's threshold, a text is flagged when any category is;
* ``transformer`` / ``linear`` — the two parts of the shipped scorer alone, each at its own thresholds;
* ``engine-transformer`` — the engine with the transformer alone (the screen before the linear scorer);
* ``baseline`` — char 1-3-gram TF-IDF + logistic regression (scikit-learn), fitted here on the train splits
  only, on the raw text, threshold 0.5: the anchor a shipped model must beat.

Figures: ``macro_f1`` — on cold-dev / swsr-test the 2-class macro-F1 (COLD's metric) of flagged vs label, on
derived-test the mean F1 over the categories; ``harmless_flagged`` — the share of texts without any label that
are flagged (false-positive rate); per category precision / recall / F1 and the confusion counts. Every
headline figure has a bootstrap 95 % interval (percentile, ``--bootstrap`` resamples of the set's rows,
fixed seed).

Transformer scores are cached under ``var/eval-cache`` by the hash of the text read (the first full run takes
several minutes on 2 cores; later runs seconds). ``--limit`` takes a deterministic subsample of each set.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from moderation import config as moderation_config
from moderation.category_data import all_examples, load_team_set
from moderation.dataset import DEFAULT_DATA_ROOT, MODEL_CATEGORIES, DatasetError, Example
from moderation.disguise import STYLES, _Finder, disguise, load_keywords
from moderation.engine import Screener, _with_model_thresholds
from moderation.policy import GROUP_SUFFIX, Policy
from moderation.scorecache import DEFAULT_CACHE_DIR, engine_views
from moderation.types import Verdict

__all__ = [
    "SETS",
    "EvalError",
    "ScoredSet",
    "bootstrap_ci",
    "engine_flags",
    "evaluate_disguise",
    "evaluate_scored",
    "fit_baseline",
    "main",
    "prf",
    "two_class_macro_f1",
]

SETS: tuple[str, ...] = ("cold-dev", "swsr-test", "derived-test", "team-categories", "disguise")
BINARY_SETS = ("cold-dev", "swsr-test")
ABUSE = MODEL_CATEGORIES.index("abuse")


class EvalError(RuntimeError):
    """Bad arguments or data for an evaluation (reported as one line by the CLI)."""


# ----------------------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------------------


def prf(y: np.ndarray, p: np.ndarray) -> dict[str, float | int]:
    """Precision, recall, F1 and the confusion counts of the positive class (``y``, ``p``: 0/1 or bool)."""
    y, p = np.asarray(y, dtype=bool), np.asarray(p, dtype=bool)
    tp, fp = int((y & p).sum()), int((~y & p).sum())
    fn, tn = int((y & ~p).sum()), int((~y & ~p).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn, "tn": tn}


def two_class_macro_f1(y: np.ndarray, p: np.ndarray) -> float:
    """COLD's metric: mean F1 of the positive and the negative class."""
    y, p = np.asarray(y, dtype=bool), np.asarray(p, dtype=bool)
    return (float(prf(y, p)["f1"]) + float(prf(~y, ~p)["f1"])) / 2


def _f1_rows(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """F1 of the positive class for each row of ``[B, n]`` boolean arrays (0 where there is no true positive)."""
    tp = (y & p).sum(1)
    den = 2 * tp + (~y & p).sum(1) + (y & ~p).sum(1)
    return np.where(tp > 0, 2 * tp / np.maximum(den, 1), 0.0)


def _macro2_rows(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    return (_f1_rows(y, p) + _f1_rows(~y, ~p)) / 2


def _harmless_rows(neg: np.ndarray, flagged: np.ndarray) -> np.ndarray:
    n = neg.sum(1)
    return np.where(n > 0, (neg & flagged).sum(1) / np.maximum(n, 1), np.nan)


def bootstrap_ci(
    stat: Callable[[np.ndarray], np.ndarray], n: int, resamples: int = 1000, seed: int = 13, chunk: int = 200
) -> list[float]:
    """Percentile 95 % interval of ``stat`` over bootstrap resamples of ``n`` rows.

    ``stat`` takes a ``[B, n]`` matrix of row indices and returns ``B`` values (vectorised: one resample per
    row of indices). Returns ``[low, high]``; ``[nan, nan]`` for an empty set.
    """
    if n == 0 or resamples <= 0:
        return [float("nan"), float("nan")]
    rng = np.random.default_rng(seed)
    vals = []
    for start in range(0, resamples, chunk):
        idx = rng.integers(0, n, size=(min(chunk, resamples - start), n))
        vals.append(stat(idx))
    v = np.concatenate(vals)
    v = v[~np.isnan(v)]
    if not len(v):
        return [float("nan"), float("nan")]
    lo, hi = np.percentile(v, [2.5, 97.5])
    return [float(lo), float(hi)]


@dataclass
class ScoredSet:
    """One evaluation set under one system: labels ``y`` and predictions ``pred`` (``[n, C]`` bool, category
    order :data:`MODEL_CATEGORIES`), ``flagged`` (``[n]`` bool: the text is flagged at all) and sources."""

    y: np.ndarray
    pred: np.ndarray
    flagged: np.ndarray
    sources: list[str] = field(default_factory=list)


def evaluate_scored(s: ScoredSet, binary: bool, resamples: int = 1000, seed: int = 13) -> dict:
    """The figures of one system on one set (see the module docstring), with bootstrap intervals."""
    y, pred, flagged = np.asarray(s.y, bool), np.asarray(s.pred, bool), np.asarray(s.flagged, bool)
    n = len(y)
    neg = ~y.any(axis=1)
    out: dict = {"n": n, "n_harmless": int(neg.sum()), "categories": {}}
    cats = [j for j in range(len(MODEL_CATEGORIES)) if y[:, j].any()]
    for j in cats:
        out["categories"][MODEL_CATEGORIES[j]] = prf(y[:, j], pred[:, j])
    out["harmless_flagged"] = float(flagged[neg].mean()) if neg.any() else float("nan")
    out["harmless_flagged_ci"] = bootstrap_ci(lambda i: _harmless_rows(neg[i], flagged[i]), n, resamples, seed)
    if binary:
        pos = y[:, ABUSE]
        out["macro_f1"] = two_class_macro_f1(pos, flagged)
        out["macro_f1_ci"] = bootstrap_ci(lambda i: _macro2_rows(pos[i], flagged[i]), n, resamples, seed)
        out["flagged"] = prf(pos, flagged)
    elif cats:
        out["macro_f1"] = float(np.mean([out["categories"][MODEL_CATEGORIES[j]]["f1"] for j in cats]))
        out["macro_f1_ci"] = bootstrap_ci(
            lambda i: np.mean([_f1_rows(y[i, j], pred[i, j]) for j in cats], axis=0), n, resamples, seed
        )
    if s.sources:
        src = np.array(s.sources)
        out["harmless_flagged_by_source"] = {
            str(name): {"n": int((neg & (src == name)).sum()), "flagged": float(flagged[neg & (src == name)].mean())}
            for name in sorted(set(src[neg].tolist()))
        }
    return out


# ----------------------------------------------------------------------------------------------------
# Systems
# ----------------------------------------------------------------------------------------------------


def engine_flags(verdicts: Sequence[Verdict]) -> tuple[np.ndarray, np.ndarray]:
    """``(per-category flags [n, C], flagged [n])`` of engine verdicts (see ``engine`` in the docstring)."""
    pred = np.zeros((len(verdicts), len(MODEL_CATEGORIES)), dtype=bool)
    flagged = np.array([v.decision != "pass" for v in verdicts], dtype=bool)
    for i, v in enumerate(verdicts):
        if not flagged[i]:
            continue
        for h in v.hits:
            if h.category in MODEL_CATEGORIES and not h.list.endswith(GROUP_SUFFIX):
                pred[i, MODEL_CATEGORIES.index(h.category)] = True
    return pred, flagged


def _threshold_pred(scores: np.ndarray, thresholds: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    t = np.array([thresholds.get(c, 0.5) for c in MODEL_CATEGORIES])
    pred = scores >= t
    return pred, pred.any(axis=1)


class _Baseline:
    """The char n-gram TF-IDF + LR anchor (scikit-learn), fitted on raw train texts."""

    def __init__(self, vectorizer, models) -> None:
        self.vectorizer = vectorizer
        self.models = models

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        x = self.vectorizer.transform(list(texts))
        return np.stack([m.predict_proba(x)[:, 1] for m in self.models], axis=1)


def fit_baseline(examples: Sequence[Example]) -> _Baseline:
    """Char 1-3-gram TF-IDF (``sublinear_tf``, ``min_df=2``) + one ``LogisticRegression(C=1)`` per category."""
    try:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
    except ImportError as exc:  # a dev dependency: the runtime never needs it
        raise EvalError("the baseline needs scikit-learn (pip install -e .[dev]) or pass --no-baseline") from exc
    texts = [e.text for e in examples]
    y = np.array([e.target() for e in examples], dtype=np.int64)
    vec = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True, min_df=2)
    x = vec.fit_transform(texts)
    models = []
    for j in range(len(MODEL_CATEGORIES)):
        if y[:, j].min() == y[:, j].max():
            raise EvalError(f"the train split has no positive and negative rows for {MODEL_CATEGORIES[j]}")
        models.append(LogisticRegression(C=1.0, solver="liblinear").fit(x, y[:, j]))
    return _Baseline(vec, models)


def _subsample(rows: list[Example], limit: int | None) -> list[Example]:
    if not limit or len(rows) <= limit:
        return rows
    key = [hashlib.sha1(f"{e.source}\x00{e.text}".encode(), usedforsecurity=False).hexdigest() for e in rows]
    keep = sorted(range(len(rows)), key=key.__getitem__)[:limit]
    return [rows[i] for i in sorted(keep)]


def load_sets(examples: Sequence[Example], names: Sequence[str], limit: int | None) -> dict[str, list[Example]]:
    """The evaluation rows per set name (``disguise`` starts from COLD dev offensive rows; ``team-categories``
    is read from its file, not from ``examples``)."""
    out = {}
    if "team-categories" in names:
        out["team-categories"] = _subsample(load_team_set(), limit)
    pick = {
        "cold-dev": lambda e: e.source == "cold" and e.split == "dev",
        "swsr-test": lambda e: e.source == "swsr" and e.split == "test",
        "derived-test": lambda e: e.source.startswith("derived") and e.split == "test",
        "disguise": lambda e: e.source == "cold" and e.split == "dev" and e.labels.get("abuse") == 1,
    }
    out.update({name: _subsample([e for e in examples if pick[name](e)], limit) for name in names if name in pick})
    return {name: out[name] for name in names}


# ----------------------------------------------------------------------------------------------------
# Running
# ----------------------------------------------------------------------------------------------------


class _Scorers:
    """Everything that scores a list of texts: the engine, the shipped scorer and its parts, the baseline."""

    def __init__(self, clf, cache, baseline: _Baseline | None, thresholds_parts: dict[str, dict[str, float]]):
        self.clf = clf
        self.cache = cache
        self.baseline = baseline
        self.thr = thresholds_parts
        self.views_screener = Screener(classifier=None)

    def _wrapped(self, transformer_only: bool):
        clf, cache = self.clf, self.cache

        class Cached:  # the engine's classifier protocol, on cached transformer scores
            version = clf.transformer_version if transformer_only else clf.version
            thresholds = self.thr["transformer"] if transformer_only else clf.thresholds

            def predict(self, texts: list[str]) -> list[dict[str, float]]:
                t = cache.scores(texts)
                s = t if transformer_only else clf.combine(t, texts)
                return [{c: round(float(v), 6) for c, v in zip(MODEL_CATEGORIES, row, strict=True)} for row in s]

        return Cached()

    def run(self, rows: Sequence[Example], texts: Sequence[str] | None = None) -> dict[str, ScoredSet]:
        """Every system's predictions on ``rows`` (or on ``texts`` labelled like ``rows``)."""
        texts = list(texts) if texts is not None else [e.text for e in rows]
        y = np.array([e.target() for e in rows], dtype=bool).reshape(len(rows), len(MODEL_CATEGORIES))
        sources = [e.source for e in rows]
        views = engine_views(texts, self.views_screener)
        t = self.cache.scores(views, progress=_progress)
        out: dict[str, ScoredSet] = {}
        for name, only in (("engine", False), ("engine-transformer", True)):
            if only and self.clf.linear is None:
                continue
            # the compiled default lexicon is shared: building it again costs seconds per screener. A screener
            # handed a classifier object keeps the policy's default bands, while the shipped one ("auto")
            # adopts the classifier's own thresholds as review thresholds: adopt them here too, or "engine"
            # is not what a user sees (before 2026-12-03 it was scored at the default 0.5 / 0.6 bands)
            wrapped = self._wrapped(only)
            policy = _with_model_thresholds(Policy.default(), wrapped)  # type: ignore[arg-type]
            screener = Screener(lexicon=self.views_screener.lexicon, classifier=wrapped, policy=policy)
            verdicts: list[Verdict] = []
            for i in range(0, len(texts), 512):
                verdicts += screener.screen_batch(texts[i : i + 512])
            pred, flagged = engine_flags(verdicts)
            out[name] = ScoredSet(y, pred, flagged, sources)
        parts = {"classifier": (self.clf.combine(t, views), self.clf.thresholds)}
        if self.clf.linear is not None:
            parts["transformer"] = (t, self.thr["transformer"])
            parts["linear"] = (self.clf.linear.predict_array(views), self.thr["linear"])
        if self.baseline is not None:
            parts["baseline"] = (self.baseline.scores(texts), {c: 0.5 for c in MODEL_CATEGORIES})
        for name, (scores, thr) in parts.items():
            pred, flagged = _threshold_pred(np.asarray(scores), thr)
            out[name] = ScoredSet(y, pred, flagged, sources)
        return out


def _progress(done: int, total: int) -> None:
    print(f"  transformer: {done}/{total} new texts scored", file=sys.stderr, flush=True)


def evaluate_disguise(
    rows: Sequence[Example], scorers: _Scorers, keywords: Sequence[str], resamples: int, limit: int | None
) -> dict:
    """Recall per disguise style on the rows it changes, beside the recall of the same rows written plainly."""
    finder = _Finder(keywords)
    spans = [finder.spans(e.text) for e in rows]
    out: dict = {}
    plain = scorers.run(rows)
    for style in STYLES:
        idx = [i for i, sp in enumerate(spans) if sp or style == "whole_text_pinyin"]
        copies = [disguise(rows[i].text, style, spans[i]) for i in idx]
        keep = [k for k, i in enumerate(idx) if copies[k] != rows[i].text]
        if limit:
            keep = keep[:limit]
        sub = [rows[idx[k]] for k in keep]
        texts = [copies[k] for k in keep]
        entry: dict = {"n_changed": len(sub), "systems": {}}
        if sub:
            got = scorers.run(sub, texts)
            at = np.array([idx[k] for k in keep])
            for name, s in got.items():
                was = plain[name].flagged[at]
                now = s.flagged
                entry["systems"][name] = {
                    "recall_plain": float(was.mean()),
                    "recall": float(now.mean()),
                    "recall_ci": bootstrap_ci(lambda i, now=now: now[i].mean(1), len(now), resamples),
                }
        out[style] = entry
    return out


def run(args: argparse.Namespace) -> dict:
    """Score every requested set with every system and return the report (JSON-ready)."""
    import torch  # here, not at the top: `--help` and argument errors should not wait for torch

    from moderation.classifier import Classifier
    from moderation.scorecache import TransformerCache

    t0 = time.time()
    torch.set_num_threads(args.threads)
    config = moderation_config.from_arguments(args)
    clf = Classifier.load(args.model_dir, quantize=args.quantize, config=config)
    mode = "int8" if clf.quantized else "fp32"
    cache = TransformerCache(
        args.score_cache / f"{clf.transformer_version}-{mode}.npz", len(MODEL_CATEGORIES), clf.transformer_scores
    )
    meta = json.loads(((args.model_dir or clf_dir()) / "classifier.json").read_text(encoding="utf-8"))
    combine = meta.get("combine") or {}
    parts = {
        "transformer": combine.get("thresholds_transformer") or meta.get(f"thresholds_{mode}") or clf.thresholds,
        "linear": combine.get("thresholds_linear") or {},
    }
    examples = all_examples(args.data_root)
    baseline = None
    if not args.no_baseline:
        print("fitting the baseline on the train split ...", file=sys.stderr, flush=True)
        baseline = fit_baseline([e for e in examples if e.split == "train"])
    scorers = _Scorers(clf, cache, baseline, parts)
    sets = load_sets(examples, args.sets, args.limit)
    report: dict = {
        "model_version": clf.version,
        "quantize": clf.quantized,
        "thresholds": clf.thresholds,
        "bootstrap_resamples": args.bootstrap,
        "limit": args.limit,
        "sets": {},
    }
    for name, rows in sets.items():
        print(f"scoring {name} ({len(rows)} rows) ...", file=sys.stderr, flush=True)
        if name == "disguise":
            kw = load_keywords(args.data_root)
            report["sets"][name] = {
                "n": len(rows),
                "styles": evaluate_disguise(rows, scorers, kw, args.bootstrap, args.disguise_limit),
            }
            continue
        got = scorers.run(rows)
        report["sets"][name] = {
            "n": len(rows),
            "systems": {k: evaluate_scored(v, name in BINARY_SETS, args.bootstrap) for k, v in got.items()},
        }
    report["seconds"] = round(time.time() - t0, 1)
    return report


def clf_dir() -> Path:
    """The shipped model directory."""
    from moderation.classifier import DEFAULT_MODEL_DIR

    return DEFAULT_MODEL_DIR


# ----------------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------------


def _ci(v: float, ci: Sequence[float], pct: bool = False) -> str:
    k = 100.0 if pct else 1.0
    unit = " %" if pct else ""
    return f"{v * k:6.{1 if pct else 4}f}{unit} [{ci[0] * k:.{1 if pct else 3}f}, {ci[1] * k:.{1 if pct else 3}f}]"


def format_report(report: dict) -> str:
    """The human-readable report."""
    lines = [
        f"model {report['model_version']}  quantize={report['quantize']}  bootstrap={report['bootstrap_resamples']}"
        f"  limit={report['limit']}  ({report.get('seconds', 0):.0f}s)"
    ]
    for name, res in report["sets"].items():
        if name == "disguise":
            lines.append(f"\n== disguise (COLD dev offensive rows, n={res['n']}): recall plain -> disguised")
            systems = sorted({s for st in res["styles"].values() for s in st["systems"]})
            lines.append(f"  {'style':18} {'n':>5}  " + "  ".join(f"{s:>24}" for s in systems))
            for style, st in res["styles"].items():
                cells = []
                for s in systems:
                    v = st["systems"].get(s)
                    cells.append(f"{v['recall_plain']:.3f} -> {v['recall']:.3f}".rjust(24) if v else " " * 24)
                lines.append(f"  {style:18} {st['n_changed']:5}  " + "  ".join(cells))
            continue
        lines.append(f"\n== {name}  (n={res['n']})")
        label = "2-class macro-F1" if name in BINARY_SETS else "category macro-F1"
        lines.append(f"  {'system':19} {label + ' [95% CI]':>28}   {'harmless flagged [95% CI]':>26}")
        for sys_name, r in res["systems"].items():
            mf = _ci(r["macro_f1"], r["macro_f1_ci"]) if "macro_f1" in r else "-"
            hf = _ci(r["harmless_flagged"], r["harmless_flagged_ci"], pct=True)
            lines.append(f"  {sys_name:19} {mf:>28}   {hf:>26}")
        cats = list(next(iter(res["systems"].values()))["categories"])
        lines.append(f"  per category P / R / F1:  {'':10}" + "".join(f"{s:>22}" for s in res["systems"]))
        for cat in cats:
            cells = "".join(
                "{precision:.3f}/{recall:.3f}/{f1:.3f}".format(**r["categories"][cat]).rjust(22)
                for r in res["systems"].values()
            )
            lines.append(f"  {cat:36}{cells}")
        first = next(iter(res["systems"].values()))
        if "harmless_flagged_by_source" in first and len(first["harmless_flagged_by_source"]) > 1:
            lines.append("  harmless flagged by source: ")
            for src in first["harmless_flagged_by_source"]:
                cells = "".join(
                    f"{r['harmless_flagged_by_source'][src]['flagged'] * 100:21.1f}%" for r in res["systems"].values()
                )
                lines.append(f"  {src:22} n={first['harmless_flagged_by_source'][src]['n']:<5}      {cells}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point (``python -m moderation.evaluate --help``)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-dir", type=Path, default=None)
    ap.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    ap.add_argument("--sets", default=",".join(SETS), help=f"comma-separated, of: {', '.join(SETS)}")
    ap.add_argument("--limit", type=int, default=None, help="at most N rows per set (deterministic subsample)")
    ap.add_argument("--disguise-limit", type=int, default=400, help="at most N changed rows per disguise style")
    ap.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% intervals")
    ap.add_argument("--no-baseline", action="store_true", help="skip the TF-IDF + LR baseline")
    ap.add_argument("--score-cache", type=Path, default=DEFAULT_CACHE_DIR, help="transformer score cache")
    ap.add_argument("--json", type=Path, default=None, help="also write the report here")
    q = ap.add_mutually_exclusive_group()
    q.add_argument("--int8", dest="quantize", action="store_true", default=None)
    q.add_argument("--fp32", dest="quantize", action="store_false")
    ap.add_argument("--threads", type=int, default=2)
    moderation_config.add_arguments(ap)
    args = ap.parse_args(argv)
    args.sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    unknown = sorted(set(args.sets) - set(SETS))
    if unknown or not args.sets:
        ap.error(f"unknown set(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(SETS)}")
    if args.limit is not None and args.limit <= 0:
        ap.error("--limit must be positive")
    try:
        report = run(args)
    except (EvalError, DatasetError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
