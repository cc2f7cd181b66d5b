"""Mentions of our organisations: one Aho-Corasick pass against a `term in text` test per name or alias.

    python -m bench.monitor_mentions

500 organisations with 4 names and aliases each (2,000 terms) over 1,000 texts of union news sentences
(``tests/data/moderation_union_news_dev.txt``, 30 % with an organisation named); prints the time of each way,
the automaton's build time, and whether both found the same organisations in every text.
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from moderation.normalize import normalize, normalize_term  # noqa: E402 - after the path
from monitor.pipeline import _Mentions  # noqa: E402

PLACES = (
    "江苏南京无锡徐州常州苏州南通连云港淮安盐城扬镇泰宿迁"
    "浦口玄武秦淮建邺鼓楼栖霞雨花台江宁六合溧水高淳锡山惠山滨湖梁溪新吴江阴宜兴"
)


def _best(f: Callable[[], Any], n: int = 5) -> tuple[Any, float]:
    out, times = None, []
    for _ in range(n):
        started = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - started)
    return out, min(times)


def main() -> None:
    """Print the comparison (see the module docstring)."""
    rng = random.Random(13)
    places: set[str] = set()
    while len(places) < 500:
        places.add("".join(rng.sample(PLACES, 3)))
    rows: list[tuple[int, str]] = []
    for i, p in enumerate(sorted(places), start=1):
        rows += [(i, f"{p}区总工会"), (i, f"{p}总工会"), (i, f"{p}工会"), (i, f"{p}区总")]
    lines = (ROOT / "tests/data/moderation_union_news_dev.txt").read_text(encoding="utf-8").splitlines()
    sentences = [line for line in lines if line and not line.startswith("#")]
    texts = []
    for _ in range(1000):
        parts = rng.choices(sentences, k=rng.randint(3, 8))
        if rng.random() < 0.3:
            parts.insert(rng.randrange(len(parts)), rng.choice(rows)[1] + "召开会议。")
        texts.append("".join(parts))
    norms = [normalize(t).text for t in texts]
    terms = [(org, normalize_term(t)) for org, t in rows]
    before, t_before = _best(lambda: [sorted({o for o, term in terms if term and term in n}) for n in norms])
    matcher = _Mentions(tuple(rows))
    after, t_after = _best(lambda: [matcher(n) for n in norms])
    _, t_build = _best(lambda: _Mentions(tuple(rows)))
    print(f"{len(rows)} terms, {len(texts)} texts of {statistics.mean(map(len, norms)):.0f} characters on average")
    print(f"term in text per term (terms normalised once): {t_before * 1000:.1f} ms")
    print(f"one Aho-Corasick pass: {t_after * 1000:.1f} ms; building the automaton {t_build * 1000:.1f} ms")
    print(f"same organisations in every text: {after == before}; texts naming one: {sum(1 for x in after if x)}")


if __name__ == "__main__":
    main()
