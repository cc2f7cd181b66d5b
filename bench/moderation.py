"""Benchmark of the moderation engine: ``python -m bench.moderation [--throughput] [--quality] [--all]``.

By default it prints the figures issue 14 asks for, each measured the way it is used:

* **lexicon path** (normaliser + lexicon matcher with every view, allow-list, offsets and ``Hit`` objects, as
  ``screen_batch`` runs it on texts joined in batches of ``--batch``), pinned to one CPU core, in chars/s of
  original text: best wall time of ``--repeat`` runs and the process CPU time of that run (on a shared
  machine the CPU time is what the same work costs on an idle core). The corpus is realistic traffic, mostly
  clean: union-news sentences, multi-sentence notices built from them, the ordinary-text set, and COLD
  *train* comments (95 % of them harmless rows) when ``../shared/datasets/COLD`` is present;
* **classifier latency** of one 256-token window on one torch thread (p50, p95; wall and CPU);
* **texts/s** for 60-character texts through ``screen_batch`` on two torch threads, and how many texts each
  encoder forward pass carried (a hook on the encoder counts them: batching is checked, not assumed);
* **time to a ready matcher / to a loaded model** and **RSS after load**, each in a fresh process (cold
  interpreter, warm disk cache).

``--throughput`` adds the detailed table (raw automata, normaliser alone, both Aho–Corasick backends, the
105k-term ``extended`` lexicon, the whole rules screen); ``--quality`` the false-positive rates on harmless
text, lexicon recall on COLD dev offensive rows and recall on disguised text; ``--all`` both, plus
``bench.classifier.main()``. ``--corpus FILE`` (one text per line) replaces the corpus. ``--memory`` prints
only the fresh-process RSS figures (rules only and with the classifier), in ~20 s. ``--batching`` prints only
60-char texts/s at 32 / 64 / 128 texts per ``screen_batch`` call (and 128 never side by side) and the
peak RSS with long texts with batches side by side by default, never and always, in ~2 min.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import platform
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
NEWS = [ROOT / "tests" / "data" / f"moderation_union_news_{s}.txt" for s in ("dev", "test")]
ORDINARY = ROOT / "tests" / "data" / "moderation_ordinary_test.txt"
console = Console()


def pin_one_core() -> str:
    """Pin this process to one CPU so figures are per core; returns a description."""
    try:
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return f"pinned to CPU {cpu}"
    except (AttributeError, OSError):
        return "not pinned (no sched_setaffinity)"


def read_lines(path: Path) -> list[str]:
    return [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip() and ln[0] != "#"]


def read_cold(split: str) -> list[tuple[int, str]]:
    path = SHARED / "COLD" / f"{split}.csv"
    if not path.is_file():
        return []
    with path.open(encoding="utf-8-sig", newline="") as fh:
        return [(int(r["label"]), r["TEXT"]) for r in csv.DictReader(fh)]


def load_corpus(path: Path | None, target_chars: int) -> tuple[list[str], str]:
    if path is not None:
        texts, name = read_lines(path), path.name
    else:
        cold = read_cold("train") + read_cold("dev")
        if cold:
            texts, name = [t for _, t in cold], "COLD train+dev"
        else:
            texts, name = [t for p in NEWS for t in read_lines(p)], "union news (COLD not found)"
    out: list[str] = []
    total = 0
    while total < target_chars:
        for t in texts:
            out.append(t)
            total += len(t)
            if total >= target_chars:
                break
    return out, name


def best_of(repeat: int, fn: Callable[[], object]) -> float:
    """Best wall time of ``repeat`` runs (the least disturbed by the other processes on the machine)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def batches(texts: list[str], size: int) -> list[list[str]]:
    return [texts[i : i + size] for i in range(0, len(texts), size)]


def traffic_corpus(target_chars: int, seed: int = 14) -> tuple[list[str], str]:
    """Texts like real traffic, mostly clean: news sentences, notices, comments (see the module docstring)."""
    rng = random.Random(seed)
    news = [t for p in NEWS for t in read_lines(p)] + read_lines(ORDINARY)
    cold = read_cold("train")  # train split only: dev is for quality figures, test is never read
    clean = [t for y, t in cold if y == 0]
    offensive = [t for y, t in cold if y == 1]
    out: list[str] = []
    total = 0
    while total < target_chars:
        r = rng.random()
        if r < 0.4 or not clean:
            t = rng.choice(news)
        elif r < 0.55:
            t = "".join(rng.choice(news) for _ in range(rng.randint(4, 12)))  # a notice of several sentences
        elif r < 0.95:
            t = rng.choice(clean)
        else:
            t = rng.choice(offensive)
        out.append(t)
        total += len(t)
    name = "news + notices + COLD train comments (5 % offensive)" if clean else "news + notices (COLD absent)"
    return out, name


def _lexicon_loops() -> str:
    """Which loops the lexicon path runs here: the compiled extension (moderation/_lexfast.c) or numpy."""
    from moderation import fastpath

    return "compiled loops (moderation/_lexfast.c)" if fastpath.compiled() else "numpy loops (extension not built)"


def timed(repeat: int, fn: Callable[[], object]) -> tuple[float, float]:
    """(best wall seconds, CPU seconds of that same run) over ``repeat`` runs."""
    best = (float("inf"), float("inf"))
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if wall < best[0]:
            best = (wall, cpu)
    return best


_COLD_START = """
import json, resource, sys, time
t0, c0 = time.perf_counter(), time.process_time()
import moderation
moderation.configure(moderation.ModerationConfig(classifier={classifier}))
s = moderation.get_screener()
clf = s.classifier
t1, c1 = time.perf_counter(), time.process_time()
def rss():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS:")) / 1024
def anon():  # private memory; the rest of RSS is file pages (library code, mapped files)
    return next(int(l.split()[1]) for l in open("/proc/self/smaps_rollup") if l.startswith("Anonymous:")) / 1024
loaded = rss()
s.screen("市总工会召开全委会议")
t2 = time.perf_counter()
print(json.dumps({{"model_s": t1 - t0, "model_cpu_s": c1 - c0, "ready_s": t2 - t0, "rss_mb": loaded,
                  "rss_screened_mb": rss(), "anon_screened_mb": anon(), "model": s.model_version}}))
"""
_IMPORT_RSS = """
import {module}
print(next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS:")) / 1024)
"""


def import_rss(module: str) -> float:
    """RSS in MB of a fresh interpreter that has only imported ``module`` (the floor under a figure)."""
    code = _IMPORT_RSS.format(module=module)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT)  # noqa: S603
    return float(out.stdout.strip().splitlines()[-1])


def cold_start(classifier: bool) -> dict[str, object]:
    """Start-up figures of a fresh interpreter (the lexicon cache and the built encoder already on disk):
    time to a loaded model (wall and CPU), to the first verdict, RSS after load and after that verdict."""
    code = _COLD_START.format(classifier=classifier)
    # Our own interpreter running our own fixed code: the first run warms the caches, the next are measured.
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, cwd=ROOT)  # noqa: S603
    runs = [
        json.loads(
            subprocess.run(  # noqa: S603
                [sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        for _ in range(3)
    ]
    return min(runs, key=lambda r: r["model_s"])  # the least disturbed of three starts


def summary(args: argparse.Namespace) -> None:
    """The issue's figures: lexicon path, classifier latency and throughput, start-up time and memory."""
    from moderation import fastpath
    from moderation.engine import Screener
    from moderation.lexicon import load_builtin
    from moderation.normalize import normalize

    texts, corpus_name = load_corpus(args.corpus, args.chars) if args.corpus else traffic_corpus(args.chars)
    chars = sum(len(t) for t in texts)
    joined = ["\n".join(b) for b in batches(texts, args.batch)]
    pinned = pin_one_core()
    console.print(
        f"machine: {platform.machine()} {os.cpu_count()} CPUs, {_cpu_name()}, load average "
        f"{os.getloadavg()[0]:.1f}; Python {platform.python_version()}"
    )
    console.print(
        f"corpus: {corpus_name}: {len(texts):,} texts, {chars:,} chars (mean {chars / len(texts):.0f}); "
        f"batches of {args.batch}; {pinned}"
    )
    table = Table(title="moderation engine (issue 14 figures)")
    for col in ("what", "figure", "note"):
        table.add_column(col)
    lex = load_builtin("default")
    hits = sum(len(lex.match(normalize(b))) for b in joined)
    wall, cpu = timed(args.repeat, lambda: [lex.match(normalize(b)) for b in joined])
    table.add_row(
        f"lexicon path (normaliser + matcher), 1 core, {_lexicon_loops()}",
        f"{chars / wall / 1e6:.1f} M chars/s wall, {chars / cpu / 1e6:.1f} M chars/s CPU",
        f"default lexicon ({len(lex):,} patterns), {hits / chars * 1e6:,.0f} hits per M chars",
    )
    if fastpath.available():
        # The same texts through the numpy loops, the path an install without the extension runs.
        with fastpath.disabled():
            wall, cpu = timed(args.repeat, lambda: [lex.match(normalize(b)) for b in joined])
        table.add_row(
            "lexicon path, numpy loops (extension off)",
            f"{chars / wall / 1e6:.1f} M chars/s wall, {chars / cpu / 1e6:.1f} M chars/s CPU",
            "same hits",
        )
    screener = Screener(lexicon=lex, classifier=None)
    wall, cpu = timed(args.repeat, lambda: [screener.screen_batch(b) for b in batches(texts, args.batch)])
    table.add_row(
        "whole rules screen (screen_batch, classifier off), 1 core",
        f"{len(texts) / wall:,.0f} texts/s wall, {len(texts) / cpu:,.0f} CPU",
        "+ personal data, policy, verdicts",
    )
    rules = cold_start(False)
    table.add_row(
        "fresh process to a ready matcher (rules only)",
        f"{rules['ready_s']:.2f} s",
        f"RSS {rules['rss_screened_mb']:.0f} MB",
    )
    os.sched_setaffinity(0, os.sched_getaffinity(0) | set(range(os.cpu_count() or 1)))  # unpin for torch
    try:
        classifier_rows(table, args)
    except ImportError as exc:
        table.add_row("classifier", "skipped", f"{exc}")
    console.print(table)


def classifier_rows(table: Table, args: argparse.Namespace) -> None:
    """Rows for the classifier: latency per window (1 thread), screen_batch texts/s (2 threads), start-up."""
    import torch

    from bench.classifier import one_window_text, pct, text_of, timings
    from moderation.engine import Screener

    screener = Screener()
    clf = screener.classifier
    if clf is None:
        table.add_row("classifier", "not loaded", "rules only (model missing or failed to load)")
        return
    torch.set_num_threads(1)
    window = one_window_text(clf)  # type: ignore[arg-type]
    wall, cpu = timings(lambda: clf.predict([window]), args.latency_repeat)
    table.add_row(
        "classifier, one 256-token window, 1 thread",
        f"p50 {pct(wall, 0.5):.0f} ms, p95 {pct(wall, 0.95):.0f} ms wall",
        f"CPU p50 {pct(cpu, 0.5):.0f} / p95 {pct(cpu, 0.95):.0f} ms; {screener.model_version}",
    )
    torch.set_num_threads(2)
    prose = text_of(60 * 300)
    short = [prose[i : i + 60] for i in range(0, 60 * 256, 60)]  # 256 different 60-character texts
    passes: list[int] = []
    encoder = getattr(clf, "encoder", None)
    hook = (
        encoder.register_forward_hook(lambda _m, inputs, _out: passes.append(int(inputs[0].shape[0]) if inputs else 0))
        if isinstance(encoder, torch.nn.Module)
        else None
    )
    screener.screen_batch(short[:32])  # warm-up
    passes.clear()
    t0 = time.perf_counter()
    rounds = 0
    while rounds < 2 or time.perf_counter() - t0 < args.seconds:
        screener.screen_batch(short)
        rounds += 1
    rate = rounds * len(short) / (time.perf_counter() - t0)
    if hook is not None:
        hook.remove()
    per_pass = f"{rounds * len(short) / len(passes):.1f} texts per encoder forward pass" if passes else ""
    table.add_row("screen_batch, 60-char texts, 2 threads", f"{rate:,.0f} texts/s", per_pass)
    full = cold_start(True)
    table.add_row(
        "fresh process to a loaded model (best of 3)",
        f"{full['model_s']:.2f} s wall, {full['model_cpu_s']:.2f} s CPU",
        f"first verdict at {full['ready_s']:.2f} s; {full['model']}",
    )
    table.add_row(
        "RSS with the classifier loaded",
        f"{full['rss_mb']:.0f} MB after load",
        f"{full['rss_screened_mb']:.0f} MB after the first verdict ({full['anon_screened_mb']:.0f} MB anonymous, "
        f"the rest file pages); `import torch` alone: {import_rss('torch'):.0f} MB",
    )


def memory(_args: argparse.Namespace) -> None:
    """Only the start-up and memory figures (``--memory``, ~20 s): the quick check of issue 14's RSS goal."""
    table = Table(title="moderation engine: fresh-process start-up and memory")
    for col in ("what", "figure", "note"):
        table.add_column(col)
    rules = cold_start(False)
    table.add_row(
        "rules only (classifier off)",
        f"RSS {rules['rss_screened_mb']:.0f} MB after the first verdict",
        f"{rules['anon_screened_mb']:.0f} MB anonymous; ready in {rules['ready_s']:.2f} s",
    )
    try:
        full = cold_start(True)
    except subprocess.CalledProcessError as exc:
        table.add_row("with the classifier", "failed", (exc.stderr or b"").decode(errors="replace")[-200:])
    else:
        table.add_row(
            "with the classifier",
            f"RSS {full['rss_screened_mb']:.0f} MB after the first verdict ({full['rss_mb']:.0f} MB after load)",
            f"{full['anon_screened_mb']:.0f} MB anonymous, the rest file pages; `import torch` alone: "
            f"{import_rss('torch'):.0f} MB; loaded in {full['model_s']:.2f} s; {full['model']}",
        )
    console.print(table)


_PEAK_LONG = """
import resource, sys
import moderation
import moderation.classifier as mc
from bench.classifier import text_of
mc.SIDE_BY_SIDE_TOKENS = {side}
s = moderation.get_screener()
prose = text_of(1000 * 200)
s.screen_batch([prose[i : i + 1000] for i in range(0, 1000 * 128, 1000)])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def batching(args: argparse.Namespace) -> None:
    """How the classifier's batching pays: 60-char texts/s at several texts per ``screen_batch`` call (rounds
    interleaved in one process, so a machine whose speed drifts affects each size alike; medians), and the peak
    RSS of a fresh process after ``screen_batch`` of 128 texts of 1,000 characters, with batches side by side
    up to ``SIDE_BY_SIDE_TOKENS`` padded tokens (the default), never (0) and always."""
    import statistics

    import torch

    from bench.classifier import text_of
    from moderation.classifier import SIDE_BY_SIDE_TOKENS
    from moderation.engine import Screener

    screener = Screener()
    if screener.classifier is None:
        console.print("classifier not loaded: nothing to measure")
        return
    torch.set_num_threads(2)
    prose = text_of(60 * 300)
    short = [prose[i : i + 60] for i in range(0, 60 * 256, 60)]
    screener.screen_batch(short[:32])  # warm-up
    import moderation.classifier as mc

    # (texts per call, SIDE_BY_SIDE_TOKENS): the three call sizes, and 128 with no batch side by side
    rates: dict[tuple[int, int], list[float]] = {(size, SIDE_BY_SIDE_TOKENS): [] for size in (32, 64, 128)}
    rates[128, 0] = []
    try:
        for _round in range(6):
            for (size, side), got in rates.items():
                mc.SIDE_BY_SIDE_TOKENS = side
                t0, n = time.perf_counter(), 0
                while time.perf_counter() - t0 < 2.5:
                    screener.screen_batch(short, batch_size=size)
                    n += len(short)
                got.append(n / (time.perf_counter() - t0))
    finally:
        mc.SIDE_BY_SIDE_TOKENS = SIDE_BY_SIDE_TOKENS
    table = Table(title="classifier batching (60-char texts on 2 threads; peak RSS with long texts)")
    table.add_column("what")
    table.add_column("figure")
    for (size, side), got in rates.items():
        what = f"screen_batch(batch_size={size})" + ("" if side else ", never side by side")
        table.add_row(what, f"median {statistics.median(got):.0f} texts/s", ", ".join(f"{r:.0f}" for r in got))
    for side, name in ((SIDE_BY_SIDE_TOKENS, "default"), (0, "never side by side"), (10**9, "always")):
        code = _PEAK_LONG.format(side=side)
        out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT)  # noqa: S603
        peak = float(out.stdout.strip().splitlines()[-1])
        table.add_row(f"peak RSS, 128 texts of 1,000 chars, {name} (tokens {side:,})", f"{peak:.0f} MB", "")
    console.print(table)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def throughput(args: argparse.Namespace) -> None:
    import ahocorasick
    import ahocorasick_rs

    from moderation.engine import Screener
    from moderation.lexicon import BACKENDS, DATA_DIR, load_builtin, read_tsv
    from moderation.normalize import normalize, normalize_term

    texts, corpus_name = load_corpus(args.corpus, args.chars)
    chars = sum(len(t) for t in texts)
    joined_batches = ["\n".join(b) for b in batches(texts, args.batch)]
    console.print(
        f"corpus: {corpus_name}, {len(texts):,} texts, {chars:,} chars (mean {chars / len(texts):.0f}); "
        f"batch {args.batch}; {pin_one_core()}; {platform.machine()} {platform.python_version()}"
    )
    rows: list[tuple[str, str, str, float, str]] = []

    def add(what: str, lexicon: str, backend: str, seconds: float, note: str = "") -> None:
        rows.append((what, lexicon, backend, chars / seconds, note))

    ext_entries = read_tsv(DATA_DIR / "extended.tsv")
    patterns = sorted({p for p in (normalize_term(e.term) for e in ext_entries) if p})
    # Raw automata: the ceiling, no normalisation and no hit objects.
    auto = ahocorasick.Automaton()
    for i, p in enumerate(patterns):
        auto.add_word(p, i)
    auto.make_automaton()
    rs = ahocorasick_rs.AhoCorasick(patterns, matchkind=ahocorasick_rs.MATCHKIND_STANDARD)
    n_py = 0

    def raw_py() -> None:
        nonlocal n_py
        n_py = sum(1 for b in joined_batches for _ in auto.iter(b))

    def raw_rs() -> None:
        for b in joined_batches:
            rs.find_matches_as_indexes(b, overlapping=True)

    ext_label = f"extended ({len(patterns):,})"
    add("raw Aho-Corasick, no normalisation", ext_label, "pyahocorasick", best_of(args.repeat, raw_py))
    add("raw Aho-Corasick, no normalisation", ext_label, "ahocorasick_rs", best_of(args.repeat, raw_rs))
    add("normaliser only, text by text", "-", "-", best_of(args.repeat, lambda: [normalize(t) for t in texts]))
    add("normaliser only, batched", "-", "-", best_of(args.repeat, lambda: [normalize(b) for b in joined_batches]))
    norm_batches = [normalize(b) for b in joined_batches]
    hits_per_mchar: dict[str, float] = {}
    for lex_name in ("extended", "default"):
        for backend in BACKENDS:
            # As shipped: allow-list, sound-alike terms and the common-word veto included.
            lex = load_builtin(lex_name, backend)
            label = f"{lex_name} ({len(lex):,})"
            count = sum(len(lex.match(nb)) for nb in norm_batches)
            hits_per_mchar[lex_name] = count / chars * 1e6
            add(
                "normaliser + lexicon, batched",
                label,
                backend,
                best_of(args.repeat, lambda lex=lex: [lex.match(normalize(b)) for b in joined_batches]),
                f"{count / chars * 1e6:,.0f} hits/M chars",
            )
            if backend == "ahocorasick_rs":
                # The same work without building Hit objects: shows what evidence construction costs.
                add(
                    "normaliser + lexicon, batched, match spans only (no Hit objects)",
                    label,
                    backend,
                    best_of(args.repeat, lambda lex=lex: [lex.raw_spans(normalize(b)) for b in joined_batches]),
                )
                few = texts[: max(1, len(texts) // 4)]
                few_chars = sum(len(t) for t in few)
                sec = best_of(args.repeat, lambda lex=lex, few=few: [lex.match(normalize(t)) for t in few])
                rows.append(("normaliser + lexicon, text by text", label, backend, few_chars / sec, ""))
            if lex_name == "default" and backend == "ahocorasick_rs":
                screener = Screener(lexicon=lex, classifier=None)
                sec = best_of(args.repeat, lambda s=screener: [s.screen_batch(b) for b in batches(texts, args.batch)])
                add("rules screen (screen_batch: + PII, policy, verdicts)", label, backend, sec,
                    f"{len(texts) / sec:,.0f} texts/s")  # fmt: skip

    table = Table(title=f"moderation rules engine throughput, one core (chars/s of original text), {_lexicon_loops()}")
    for col in ("what", "lexicon", "Aho-Corasick", "chars/s", "note"):
        table.add_column(col, justify="right" if col == "chars/s" else "left")
    for what, lex_label, backend, cps, note in rows:
        table.add_row(what, lex_label, backend, f"{cps / 1e6:.1f} M", note)
    console.print(table)


# --------------------------------------------------------------------------------------------------------------
_DISGUISES: list[tuple[str, Callable[[str, random.Random], str]]] = []


def disguise(name: str) -> Callable[[Callable[[str, random.Random], str]], Callable[[str, random.Random], str]]:
    def register(fn: Callable[[str, random.Random], str]) -> Callable[[str, random.Random], str]:
        _DISGUISES.append((name, fn))
        return fn

    return register


def _is_cjk(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff"


@disguise("symbols between characters")
def _symbols(text: str, rng: random.Random) -> str:
    return "".join(ch + (rng.choice(".@#*_-~ ") if _is_cjk(ch) and rng.random() < 0.5 else "") for ch in text)


@disguise("zero-width characters")
def _zero_width(text: str, rng: random.Random) -> str:
    return "".join(ch + ("\u200b" if rng.random() < 0.5 else "") for ch in text)


@disguise("traditional characters")
def _traditional(text: str, rng: random.Random) -> str:
    import opencc

    return opencc.OpenCC("s2t").convert(text)


@disguise("full-width / upper-case Latin")
def _fullwidth(text: str, rng: random.Random) -> str:
    return "".join(chr(ord(c.upper()) + 0xFEE0) if c.isascii() and c.isalnum() else c for c in text)


@disguise("repeated characters")
def _repeat(text: str, rng: random.Random) -> str:
    return "".join(ch * (3 if _is_cjk(ch) and rng.random() < 0.3 else 1) for ch in text)


@disguise("all of the above at once")
def _combined(text: str, rng: random.Random) -> str:
    return _zero_width(_symbols(_fullwidth(_traditional(_repeat(text, rng), rng), rng), rng), rng)


@disguise("homophone spellings")
def _homophone(text: str, rng: random.Random) -> str:
    from moderation.normalize import HOMOPHONES

    for variant, canonical in HOMOPHONES.items():
        if canonical != variant and canonical in text and len(canonical) == len(variant):
            text = text.replace(canonical, variant)
    return text


def quality(args: argparse.Namespace) -> None:
    from moderation.engine import Screener

    screener = Screener(classifier=None)  # rules only: this measures the lexicon and detectors

    def flagged(texts: list[str]) -> tuple[float, float]:
        verdicts = screener.screen_batch(texts)
        any_hit = sum(1 for v in verdicts if v.decision != "pass") / max(1, len(texts))
        rejected = sum(1 for v in verdicts if v.decision == "reject") / max(1, len(texts))
        return any_hit, rejected

    table = Table(title="rules-only quality (default lexicon, classifier off)")
    for col in ("set", "texts", "flagged (review or reject)", "rejected"):
        table.add_column(col)
    dev = read_cold("dev")
    sets: list[tuple[str, list[str]]] = []
    if dev:
        sets.append(("COLD dev, harmless rows (false positives)", [t for y, t in dev if y == 0]))
        sets.append(("COLD dev, offensive rows (lexicon recall)", [t for y, t in dev if y == 1]))
    swsr = SHARED / "SWSR" / "SexComment.csv"
    if swsr.is_file():
        with swsr.open(encoding="utf-8-sig", newline="") as fh:
            harmless = [r["comment_text"] for r in csv.DictReader(fh) if r["label"].strip() == "0"]
        sets.append(("SWSR comments labelled not sexist (flag rate)", harmless))
    for p in NEWS:
        sets.append((f"union news {p.stem.rsplit('_', 1)[-1]} (false positives)", read_lines(p)))
    sets.append(("ordinary text of many kinds, held out (false positives)", read_lines(ORDINARY)))
    for name, texts in sets:
        a, r = flagged(texts)
        table.add_row(name, f"{len(texts):,}", f"{a:.2%}", f"{r:.2%}")
    console.print(table)

    # Disguise robustness: texts the lexicon catches in plain form, disguised; share still caught.
    plain_texts = [t for y, t in dev if y == 1] if dev else []
    seed_terms = [
        "你就是个傻逼", "操你妈的", "这个婊子", "法轮功好", "加微信领取彩金", "网上博彩平台", "出售仿真枪",
        "约炮吗", "黑鬼滚出去", "你妈逼的", "死全家吧", "代开发票",
    ]  # fmt: skip
    rng = random.Random(11)
    plain_verdicts = screener.screen_batch(plain_texts + seed_terms)
    caught = [(t, v) for t, v in zip(plain_texts + seed_terms, plain_verdicts, strict=True)
              if any(h.source == "lexicon" for h in v.hits)]  # fmt: skip
    caught_plain = [t for t, _ in caught]
    dt = Table(title=f"recall on disguised text relative to plain ({len(caught_plain):,} texts caught when plain)")
    dt.add_column("disguise")
    dt.add_column("texts changed by it")
    dt.add_column("still caught")
    dt.add_column("offsets exact")
    cases: list[tuple[str, list[str]]] = [(name, [fn(t, rng) for t in caught_plain]) for name, fn in _DISGUISES]
    # One character of the matched term written in pinyin (sha逼): needs the plain hit's position.
    from moderation.normalize import char_pinyin
    from moderation.types import Verdict

    def pinyin_one(text: str, verdict: Verdict) -> str:
        h = next(h for h in verdict.hits if h.source == "lexicon")
        for i in range(h.start, h.end):
            if char_pinyin(text[i]):
                return text[:i] + char_pinyin(text[i]) + text[i + 1 :]
        return text

    cases.append(("one character of the term in pinyin", [pinyin_one(t, v) for t, v in caught]))

    # One character of the term replaced by another with the same toneless pinyin (沙币 for 傻逼); only for the
    # terms matched by sound (data/lexicons/sound.txt), the others being left to the homophone table.
    from moderation.lexicon import DATA_DIR, load_allow
    from moderation.normalize import _pinyin_table

    sound_terms = set(load_allow(DATA_DIR / "sound.txt"))
    by_sound: dict[str, list[str]] = {}
    for ch, py in _pinyin_table().items():
        if "\u4e00" <= ch <= "\u9fff":
            by_sound.setdefault(py, []).append(ch)
    sound_rng = random.Random(5)
    originals, swapped = [], []
    for t, v in caught:
        h = next((h for h in v.hits if h.source == "lexicon" and h.term in sound_terms), None)
        if h is None or not char_pinyin(t[h.start]):
            continue
        others = [c for c in by_sound[char_pinyin(t[h.start])][:200] if c != t[h.start]]
        if others:
            originals.append(t)
            swapped.append(t[: h.start] + sound_rng.choice(others) + t[h.start + 1 :])
    if swapped:
        cases.append((f"a same-sound character in a sound-list term ({len(swapped)} texts)", swapped))
    for name, disguised in cases:
        verdicts = screener.screen_batch(disguised)
        base = originals if name.startswith("a same-sound") else caught_plain
        changed = sum(1 for a, b in zip(base, disguised, strict=True) if a != b)
        still = sum(1 for v in verdicts if any(h.source == "lexicon" for h in v.hits))
        exact = sum(
            1 for d, v in zip(disguised, verdicts, strict=True)
            if v.hits and all(d[h.start : h.end] == h.text for h in v.hits)
        )  # fmt: skip
        n = len(disguised)
        dt.add_row(name, f"{changed / n:.1%}", f"{still / n:.1%}", f"{exact / n:.1%}")
    console.print(dt)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; see the module docstring."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=None, help="one text per line (default: COLD train+dev)")
    ap.add_argument("--chars", type=int, default=2_000_000, help="corpus size in characters")
    ap.add_argument("--batch", type=int, default=256, help="texts per screen_batch")
    ap.add_argument("--repeat", type=int, default=5, help="runs per measurement (best is reported)")
    ap.add_argument("--throughput", action="store_true", help="also the detailed throughput table")
    ap.add_argument("--quality", action="store_true", help="also false-positive rates and disguise recall")
    ap.add_argument("--all", action="store_true", help="everything, plus bench.classifier.main() if present")
    ap.add_argument("--latency-repeat", type=int, default=40, help="classifier calls per latency figure")
    ap.add_argument("--seconds", type=float, default=10.0, help="how long to run screen_batch for texts/s")
    ap.add_argument("--no-summary", action="store_true", help="skip the issue-14 figures")
    ap.add_argument("--memory", action="store_true", help="only the start-up and RSS figures (fresh processes)")
    ap.add_argument("--batching", action="store_true", help="only texts per call and side-by-side batches (~1 min)")
    args = ap.parse_args(argv)
    if args.memory:
        memory(args)
        return 0
    if args.batching:
        batching(args)
        return 0
    if not args.no_summary:
        summary(args)
    if args.throughput or args.all:
        throughput(args)
    if args.quality or args.all:
        quality(args)
    if args.all:
        if importlib.util.find_spec("bench.classifier") is not None:
            from bench import classifier

            classifier.main([])
        else:
            console.print("bench.classifier not present: classifier part skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
