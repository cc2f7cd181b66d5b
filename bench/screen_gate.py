"""The monitor's screening cascade (``moderation.screen_batch(gate=)``): what passes the gate, what it costs.

    python -m bench.screen_gate [--cold ../shared/datasets/COLD/dev.csv] [--gate 0.1]

Two sets: the monitor benchmark's union posts (``bench.monitor``'s templates, 2,000 texts) and COLD's *dev*
split (a path; not shipped with the repository). For each: the share of texts whose char n-gram score reaches
the gate in some category (they go through the transformer; texts with a rule hit do too), and, on COLD, the share
flagged (decision not ``pass``) with and without the gate, offensive and harmless rows apart, with the wall time.
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import moderation  # noqa: E402 - after the path
from bench.monitor import _post  # noqa: E402
from moderation.classifier import get_classifier  # noqa: E402


def main() -> None:
    """Print the figures (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cold", type=Path, default=ROOT.parent / "shared/datasets/COLD/dev.csv")
    parser.add_argument("--gate", type=float, default=0.1)
    args = parser.parse_args()
    clf = get_classifier()
    if clf is None or clf.linear is None:
        raise SystemExit("error: the classifier (with its char n-gram scorer) cannot be loaded")
    rng = random.Random(1)
    posts = ["\n".join(_post(rng, i)) for i in range(2000)]
    share = float((clf.linear.predict_windows(posts).max(axis=1) >= args.gate).mean())
    print(f"gate {args.gate}: the benchmark's union posts through the transformer on the n-gram score: {share:.2%}")
    if not args.cold.is_file():
        print(f"(no COLD dev split at {args.cold}: the rest is skipped)")
        return
    with args.cold.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for name, label in (("offensive", "1"), ("harmless", "0")):
        texts = [r["TEXT"] for r in rows if r["label"] == label]
        passed = float((clf.linear.predict_windows(texts).max(axis=1) >= args.gate).mean())
        flagged = {}
        for gate in (None, args.gate):
            started = time.perf_counter()
            verdicts = moderation.screen_batch(texts, gate=gate)
            flagged[gate] = (sum(v.decision != "pass" for v in verdicts) / len(texts), time.perf_counter() - started)
        (whole, t_whole), (gated, t_gated) = flagged[None], flagged[args.gate]
        print(f"COLD dev {name}: n={len(texts)}, through on the n-gram score {passed:.1%}; flagged ungated "
              f"{whole:.1%} ({t_whole:.1f} s), gated {gated:.1%} ({t_gated:.1f} s)")  # fmt: skip


if __name__ == "__main__":
    main()
