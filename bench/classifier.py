"""Classifier speed: ``python -m bench.classifier [--model-dir DIR] [--repeat N] [--json out.json]``.

Measures, for fp32 and int8 dynamic quantisation, on 1 and 2 torch threads:

* p50 / p95 latency of one 60-character text, of one 1,000-character text (several overlapping windows)
  and of one text that fills exactly one 256-token window (the issue's target: p95 <= 50 ms on one core);
* throughput in texts/s for batches of 60-character texts.

Texts are built in here (no data set needed). Report the machine with the figures: they depend on it.
Besides wall-clock latency, each case reports the process CPU time per call (``cpu_*``): on a machine
shared with other work, it is what one call costs on an idle core (meaningful for the 1-thread rows).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from moderation import config as moderation_config
from moderation.classifier import Classifier, make_windows

# Ordinary news-like Chinese prose, written for this benchmark.
_PROSE = (
    "今年春天，市里在老城区新修了三条步行街，沿街的小店陆续开张。周末的时候，很多家长带着孩子来这里散步、"
    "买点心、看街头表演。一位经营茶叶店二十多年的老板说，道路改造以后客人比以前多了，年轻人也愿意进来坐坐，"
    "听他讲不同茶叶的来历。社区工作人员表示，下一步还会增加休息座椅和公共厕所，并请居民在网上留言提出建议。"
)


def text_of(chars: int) -> str:
    """A prose text of exactly ``chars`` characters."""
    return (_PROSE * (chars // len(_PROSE) + 1))[:chars]


def one_window_text(clf: Classifier) -> str:
    """The longest prefix of the prose that still fits one :data:`WINDOW_TOKENS`-token window."""
    lo, hi = 10, 2000
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(make_windows(clf.tokenizer, [text_of(mid)]).ids) == 1:
            lo = mid
        else:
            hi = mid - 1
    return text_of(lo)


def timings(fn: Callable[[], object], repeat: int, warmup: int = 3) -> tuple[list[float], list[float]]:
    """Wall-clock and process-CPU milliseconds of ``repeat`` calls after ``warmup`` calls.

    On a shared machine the wall clock includes time spent waiting for a core that another process holds;
    with one torch thread the process CPU time is the latency the call would have on an idle core.
    """
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
    return wall, cpu


def pct(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, nearest-rank."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * len(s)) - 1))]


def bench_model(clf: Classifier, repeat: int, batch_size: int) -> list[dict]:
    """Latency and throughput rows for one loaded classifier on 1 and 2 threads."""
    short, long_, window = text_of(60), text_of(1000), one_window_text(clf)
    n_window_tokens = len(make_windows(clf.tokenizer, [window]).ids[0])
    n_long_windows = len(make_windows(clf.tokenizer, [long_]).ids)
    batch = [text_of(60 - i % 7) for i in range(batch_size)]
    cases = (
        ("60 chars", short),
        (f"1 window ({n_window_tokens} tok, {len(window)} chars)", window),
        (f"1000 chars ({n_long_windows} windows)", long_),
    )
    rows = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        row: dict = {"dtype": "int8" if clf.quantized else "fp32", "threads": threads}
        for name, text in cases:
            ms, cpu = timings(lambda t=text: clf.predict([t]), repeat)
            row[name] = {
                "p50_ms": round(pct(ms, 0.5), 2),
                "p95_ms": round(pct(ms, 0.95), 2),
                "cpu_p50_ms": round(pct(cpu, 0.5), 2),
                "cpu_p95_ms": round(pct(cpu, 0.95), 2),
            }
        ms, _ = timings(lambda: clf.predict(batch), max(5, repeat // 3), warmup=1)
        row[f"texts_per_s_60char_batch{batch_size}"] = round(batch_size / (statistics.median(ms) / 1000), 1)
        rows.append(row)
        print(json.dumps(row, ensure_ascii=False), flush=True)
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and print a table (and JSON with ``--json``)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-dir", type=Path, default=None)
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--json", type=Path, default=None)
    moderation_config.add_arguments(ap)
    args = ap.parse_args(argv)
    config = moderation_config.from_arguments(args)

    results: list[dict] = []
    load = os.getloadavg()[0]
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load {load:.2f}, torch {torch.__version__}")
    for quantize in (False, True):
        results += bench_model(
            Classifier.load(args.model_dir, quantize=quantize, config=config), args.repeat, args.batch
        )
    print(f"load average after: {os.getloadavg()[0]:.2f} (other processes share these cores)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
