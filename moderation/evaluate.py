"""Evaluate the trained classifier: ``python -m moderation.evaluate [--model-dir DIR] [--json out.json]``.

Evaluation sets (none of them used for training or model selection):

* ``cold-dev`` - COLD's dev split, ``abuse`` only. Reported as COLD's 2-class (offensive / not) macro-F1.
  The team's notes measured that COLD dev is much easier than COLD test, so read it as a floor check.
* ``swsr-test`` - our fixed SWSR test ids (``moderation/data/model/swsr_split.json``), ``abuse``.
* ``derived-test`` - weakly labelled sentences whose lexicon terms never occur in training (see
  :mod:`moderation.dataset`); every category except ``abuse`` is scored here, plus the hard negatives
  (news, discussion, anti-bias statements) whose false-positive rate is reported separately.

For each: per-category precision / recall / F1 at the model's thresholds, the macro-F1 over categories, the
2x2 confusion matrix per category, and a threshold sweep (0.1 .. 0.9).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from moderation import config as moderation_config
from moderation.classifier import MODEL_CATEGORIES, Classifier
from moderation.config import ModerationConfig
from moderation.dataset import DEFAULT_DATA_ROOT, Example, all_examples

SWEEP = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def prf(y: np.ndarray, p: np.ndarray) -> dict[str, float | int]:
    """Precision, recall, F1 and the confusion counts of the positive class."""
    tp = int(((y == 1) & (p == 1)).sum())
    fp = int(((y == 0) & (p == 1)).sum())
    fn = int(((y == 1) & (p == 0)).sum())
    tn = int(((y == 0) & (p == 0)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn, "tn": tn}


def two_class_macro_f1(y: np.ndarray, p: np.ndarray) -> float:
    """COLD's metric: mean F1 of the offensive and the non-offensive class."""
    return (prf(y, p)["f1"] + prf(1 - y, 1 - p)["f1"]) / 2


def evaluate_set(
    examples: Sequence[Example], scores: np.ndarray, thresholds: dict[str, float], categories: Sequence[str]
) -> dict:
    """Metrics for one evaluation set over the categories that have positives in it."""
    y = np.array([e.target() for e in examples], dtype=np.int64)
    out: dict = {"n": len(examples), "categories": {}}
    for cat in categories:
        j = MODEL_CATEGORIES.index(cat)
        if not y[:, j].any():
            continue
        pred = (scores[:, j] >= thresholds.get(cat, 0.5)).astype(np.int64)
        entry = prf(y[:, j], pred)
        entry["threshold"] = thresholds.get(cat, 0.5)
        entry["two_class_macro_f1"] = two_class_macro_f1(y[:, j], pred)
        entry["accuracy"] = float((y[:, j] == pred).mean())
        entry["sweep"] = {
            str(t): {
                k: v
                for k, v in prf(y[:, j], (scores[:, j] >= t).astype(np.int64)).items()
                if k in ("precision", "recall", "f1")
            }
            for t in SWEEP
        }
        out["categories"][cat] = entry
    if out["categories"]:
        out["macro_f1"] = float(np.mean([c["f1"] for c in out["categories"].values()]))
    return out


def false_positive_rates(examples: Sequence[Example], scores: np.ndarray, thresholds: dict[str, float]) -> dict:
    """Share of hard negatives (no label at all) that any category flags, by source."""
    t = np.array([thresholds.get(c, 0.5) for c in MODEL_CATEGORIES])
    flagged = (scores >= t).any(axis=1)
    out = {}
    for source in sorted({e.source for e in examples}):
        rows = [i for i, e in enumerate(examples) if e.source == source and not any(e.labels.values())]
        if rows:
            out[source] = {"n": len(rows), "flagged_rate": float(flagged[rows].mean())}
    return out


def print_report(report: dict) -> None:
    """Human-readable summary of :func:`run` output."""
    print(f"model {report['model_version']}  quantize={report['quantize']}  ({report['seconds']:.0f}s)")
    for name, res in report["sets"].items():
        print(
            f"\n== {name}  (n={res['n']})"
            + (f"  macro-F1 over categories {res['macro_f1']:.4f}" if "macro_f1" in res else "")
        )
        print(f"  {'category':10} {'thr':>5} {'P':>7} {'R':>7} {'F1':>7} {'2cl-mF1':>8}   confusion tp/fp/fn/tn")
        for cat, c in res["categories"].items():
            print(
                f"  {cat:10} {c['threshold']:5.2f} {c['precision']:7.4f} {c['recall']:7.4f} {c['f1']:7.4f} "
                f"{c['two_class_macro_f1']:8.4f}   {c['tp']}/{c['fp']}/{c['fn']}/{c['tn']}"
            )
        for cat, c in res["categories"].items():
            sweep = "  ".join(f"{t}:{v['f1']:.3f}" for t, v in c["sweep"].items())
            print(f"  sweep F1 {cat:10} {sweep}")
    print("\n== hard negatives flagged (any category)")
    for source, v in report["hard_negatives"].items():
        print(f"  {source:18} n={v['n']:5}  flagged {v['flagged_rate']:.3f}")
    print(f"\nCOLD dev 2-class macro-F1: {report['cold_dev_macro_f1']:.4f}")


def run(
    model_dir: Path | None,
    data_root: Path,
    quantize: bool | None,
    threads: int,
    config: ModerationConfig | None = None,
) -> dict:
    """Score every evaluation set and return the metrics as a JSON-ready dict.

    ``config`` names the base encoder (default: the process default).
    """
    torch.set_num_threads(threads)
    clf = Classifier.load(model_dir, quantize=quantize, config=config)
    examples = all_examples(data_root)
    sets = {
        "cold-dev": [e for e in examples if e.source == "cold" and e.split == "dev"],
        "swsr-test": [e for e in examples if e.source == "swsr" and e.split == "test"],
        "derived-test": [e for e in examples if e.source.startswith("derived") and e.split == "test"],
    }
    t0 = time.time()
    report: dict = {"model_version": clf.version, "quantize": clf.quantized, "sets": {}, "thresholds": clf.thresholds}
    derived_scores = None
    for name, rows in sets.items():
        scores = np.array([[r[c] for c in MODEL_CATEGORIES] for r in clf.predict([e.text for e in rows])])
        cats = ["abuse"] if name != "derived-test" else list(MODEL_CATEGORIES)
        report["sets"][name] = evaluate_set(rows, scores, clf.thresholds, cats)
        if name == "derived-test":
            derived_scores = scores
    report["hard_negatives"] = false_positive_rates(sets["derived-test"], derived_scores, clf.thresholds)
    report["cold_dev_macro_f1"] = report["sets"]["cold-dev"]["categories"]["abuse"]["two_class_macro_f1"]
    report["seconds"] = time.time() - t0
    return report


def main(argv: Sequence[str] | None = None) -> None:
    """Command line entry point (``python -m moderation.evaluate --help``)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-dir", type=Path, default=None)
    ap.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    ap.add_argument("--json", type=Path, default=None, help="also write the metrics here")
    q = ap.add_mutually_exclusive_group()
    q.add_argument("--int8", dest="quantize", action="store_true", default=None)
    q.add_argument("--fp32", dest="quantize", action="store_false")
    ap.add_argument("--threads", type=int, default=2)
    moderation_config.add_arguments(ap)
    args = ap.parse_args(argv)
    config = moderation_config.from_arguments(args)
    report = run(args.model_dir, args.data_root, args.quantize, args.threads, config)
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
