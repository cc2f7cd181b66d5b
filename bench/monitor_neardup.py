"""Near duplicates of short Chinese posts: MinHash (what the monitor ships) against SimHash, measured.

    python -m bench.monitor_neardup [--stories 400] [--seed 13]

Pairs made from the benchmark's own post templates (``bench.monitor``: union and workers' posts of 40–90
characters, written here), each story retold as reposts do:

* near duplicates (should join one story): the feed sandbox's four edits (``转发：`` prefix, changed punctuation
  and ``！``, an appended tag, ``【扩散】``), and harder ones — a comment put in front (``这个必须转！``), the last
  clause cut, a number changed, and two edits at once;
* different stories (should not): the same template with other slots (another city, firm and numbers — the
  hard case: most of the words are shared), and another template.

MinHash: :mod:`monitor.neardup` as shipped (character 3-grams of the normalised text, 128 permutations), a pair
joined at estimated Jaccard >= 0.5 (``MATRIX_MONITOR_CLUSTER_THRESHOLD``'s default). SimHash: 64 bits over the
same 3-grams (blake2b, weight 1), joined at Hamming distance <= k for every k from 0 to 16; its best k is
shown, chosen on these very pairs (so SimHash's row is an upper bound). Prints precision, recall and F1 per
kind of pair, and signature time per text.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.monitor import _CITIES, _FIRMS, _TEMPLATES
from monitor import neardup

THRESHOLD = 0.5


def _edits(text: str, rng: random.Random) -> dict[str, str]:
    """Each kind of repost edit applied to ``text``."""
    cut = re.split(r"[，。]", text.rstrip("。"))
    shorter = "，".join(cut[:-1]) + "。" if len(cut) > 1 else text[: max(10, len(text) * 3 // 4)]
    number = re.sub(r"\d+", lambda m: str(int(m.group()) + rng.randint(1, 9)), text, count=1)
    return {
        "prefix 转发：": "转发：" + text,
        "punctuation + ！": text.replace("，", ",", 1) + "！",
        "appended tag": text + " #关注劳动者权益#",
        "【扩散】": "【扩散】" + text.rstrip("。") + "。",
        "comment in front": "这个必须转！大家看看：" + text,
        "last clause cut": shorter,
        "a number changed": number,
        "two edits": "转发：" + number + " #关注劳动者权益#",
    }


def _simhash(text: str) -> int:
    """64-bit SimHash of the text's character 3-grams (the same shingles MinHash uses), weight 1 each."""
    counts = np.zeros(64, dtype=np.int64)
    for g in neardup.shingles(text) or {b""}:
        digest = np.frombuffer(hashlib.blake2b(g, digest_size=8).digest(), dtype=np.uint8)
        bits = np.unpackbits(digest, bitorder="little").astype(np.int64)
        counts += 2 * bits - 1
    return int(sum(1 << i for i in range(64) if counts[i] > 0))


def _scores(gold: list[bool], pred: list[bool]) -> tuple[float, float, float]:
    tp = sum(g and p for g, p in zip(gold, pred, strict=True))
    fp = sum(p and not g for g, p in zip(gold, pred, strict=True))
    fn = sum(g and not p for g, p in zip(gold, pred, strict=True))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def main() -> None:
    """Print the table (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stories", type=int, default=400)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    pairs: list[tuple[str, str, str, bool]] = []  # kind, a, b, same story
    for serial in range(args.stories):
        template = rng.randrange(len(_TEMPLATES))
        original = _story(rng, template, serial)
        text = original.split("\n", 1)[1]
        for kind, edited in _edits(text, rng).items():
            pairs.append((kind, original, original.split("\n", 1)[0] + "\n" + edited, True))
        # the same template with other slots: most words shared, another story
        other = _story(rng, template, serial + 100_000)
        if other != original:
            pairs.append(("same template, other story", original, other, False))
        another = (template + 1 + rng.randrange(len(_TEMPLATES) - 1)) % len(_TEMPLATES)
        pairs.append(("another template", original, _story(rng, another, serial + 200_000), False))
    texts = sorted({t for _k, a, b, _s in pairs for t in (a, b)})
    started = time.perf_counter()
    mh = dict(zip(texts, neardup.signatures(texts), strict=True))
    mh_s = (time.perf_counter() - started) / len(texts)
    started = time.perf_counter()
    sh = {t: _simhash(t) for t in texts}
    sh_s = (time.perf_counter() - started) / len(texts)
    gold = [same for _k, _a, _b, same in pairs]
    mh_pred = [neardup.similarity(mh[a], mh[b]) >= THRESHOLD for _k, a, b, _s in pairs]
    distances = [bin(sh[a] ^ sh[b]).count("1") for _k, a, b, _s in pairs]
    best_k = max(range(17), key=lambda k: (_scores(gold, [d <= k for d in distances])[2], -k))
    sh_pred = [d <= best_k for d in distances]
    print(f"{len(pairs)} pairs from {args.stories} stories ({len(texts)} texts, {np.mean([len(t) for t in texts]):.0f} "
          f"characters on average), seed {args.seed}")  # fmt: skip
    for name, pred in ((f"MinHash, Jaccard >= {THRESHOLD} (shipped)", mh_pred),
                       (f"SimHash 64-bit, Hamming <= {best_k} (best k on these pairs)", sh_pred)):  # fmt: skip
        p, r, f = _scores(gold, pred)
        print(f"\n{name}: precision {p:.3f}, recall {r:.3f}, F1 {f:.3f}")
        for kind in dict.fromkeys(k for k, *_ in pairs):
            rows = [(g, q) for (k, *_x), g, q in zip(pairs, gold, pred, strict=True) if k == kind]
            share = sum(q for _g, q in rows) / len(rows)
            what = "joined" if rows[0][0] else "wrongly joined"
            print(f"  {kind:28} {len(rows):5} pairs, {what} {share:6.1%}")
    sims = [neardup.similarity(mh[a], mh[b]) for _k, a, b, _s in pairs]
    other = [k == "same template, other story" for k, *_ in pairs]
    print("\nMinHash at other thresholds (precision / recall / F1; same-template pairs wrongly joined):")
    for t in (0.6, 0.7, 0.8):
        pred = [x >= t for x in sims]
        p, r, f = _scores(gold, pred)
        wrong = sum(q for q, o in zip(pred, other, strict=True) if o) / max(1, sum(other))
        print(f"  >= {t}: {p:.3f} / {r:.3f} / {f:.3f}; {wrong:.1%}")
    print(f"\nsignature time per text: MinHash {mh_s * 1e6:.0f} µs (datasketch, batched), SimHash {sh_s * 1e6:.0f} µs "
          "(this script's pure Python)")  # fmt: skip


def _story(rng: random.Random, template: int, serial: int) -> str:
    """Title and text of one post from template ``template`` (slots filled as :func:`bench.monitor._post` does)."""
    title, text = _TEMPLATES[template]
    fill = {"firm": rng.choice(_FIRMS), "city": rng.choice(_CITIES), "n": rng.randint(3, 300), "m": rng.randint(2, 12)}
    day = f"（{rng.randint(1, 12)}月{rng.randint(1, 28)}日，记者{serial % 97}号）"
    return f"{title.format(**fill)}\n{text.format(**fill)}{day}"


if __name__ == "__main__":
    main()
