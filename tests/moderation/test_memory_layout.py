"""What keeps the rules side of a screening process small (issue 14: resident memory), checked on bytes and
objects, not on RSS (which depends on the machine and on what else the process did).

* the lexicon cache is memory-mapped: the lexicon's arrays and the normaliser's lookup tables are read-only
  views of the file, and a damaged or truncated file is rebuilt, never trusted;
* the tables that screening never reads (the pinyin of each ideograph, the numpy twin of the compiled pinyin
  view) stay packed until something reads them, and then give what a fresh build gives;
* the patterns (a column table) and the common bigrams (sorted keys) answer exactly like the list of named
  tuples and the ``frozenset`` they replace;
* a process that loads the default lexicon from its cache holds a few MB of Python objects (72 MB before),
  and screens exactly like the process that compiled it.
"""

from __future__ import annotations

import json
import pickle
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from moderation import lexicon as lexicon_module
from moderation.lexicon import Entry, Lexicon, _BigramSet, _Pattern, _PatternTable, load_builtin
from moderation.normalize import PackedTable, normalize

ROOT = Path(__file__).resolve().parents[2]
SMALL = [Entry("傻逼", "abuse", "block"), Entry("加微信", "ads", "review"), Entry("法轮功", "politics", "block")]
TEXTS = ["你个傻.逼，加微信 abc123456", "sha逼 沙币 法.輪.功", "南京市长江大桥", "今天天气很好"]


@pytest.fixture
def small_builtin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """``load_builtin`` over a three-term list (the test stays fast), caching into ``tmp_path``."""
    monkeypatch.setattr(lexicon_module, "read_tsv", lambda path: SMALL)
    load_builtin.cache_clear()
    yield lambda: load_builtin("default", cache_dir=tmp_path)
    load_builtin.cache_clear()


def _matches(lex: Lexicon) -> list[list[object]]:
    return [lex.match(normalize(t)) for t in TEXTS]


def test_cached_lexicon_arrays_are_read_only_views_of_the_file(small_builtin, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    built = small_builtin()
    load_builtin.cache_clear()
    cached = small_builtin()
    assert cached is not built
    assert _matches(cached) == _matches(built) and all(_matches(built)[:2])
    (path,) = (tmp_path / "lexicon").glob("default-*.pickle")
    assert path.read_bytes().startswith(lexicon_module._CACHE_MAGIC)
    arrays = [cached._lut, cached._cat_code, cached._gate.bi, cached._common_bigrams._keys, cached._patterns._terms]
    for arr in arrays:
        assert not arr.flags.writeable and not arr.flags.owndata  # a view of the mapped file, not a copy
    with pytest.raises(ValueError, match="read-only"):
        cached._lut[0] = 1
    maps = Path("/proc/self/maps")
    if maps.is_file():
        assert str(path) in maps.read_text()


@pytest.mark.parametrize("damage", ["truncated", "empty", "bad header", "buffer past the end"])
def test_damaged_cache_files_are_rebuilt(small_builtin, tmp_path: Path, damage: str) -> None:  # type: ignore[no-untyped-def]
    expected = _matches(small_builtin())
    (path,) = (tmp_path / "lexicon").glob("default-*.pickle")
    data = path.read_bytes()
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "empty":
        data = b""
    elif damage == "bad header":
        data = b"x" + data[1:]
    else:  # the first buffer's length made larger than the file
        at = len(lexicon_module._CACHE_MAGIC) + 16 + 8
        data = data[:at] + (len(data) + 1).to_bytes(8, "little") + data[at + 8 :]
    path.write_bytes(data)
    assert lexicon_module._read_cache(path) is None
    load_builtin.cache_clear()
    assert _matches(small_builtin()) == expected
    assert lexicon_module._read_cache(path) is not None  # rewritten whole


def test_pattern_table_gives_the_patterns_back() -> None:
    rng = random.Random(14)
    words = ["傻逼", "sb", "𠀀𪚥", "a\x00b", "fuck", "法轮功", "加微信", "😀x"]
    lists = ["core", "houbb", "konsheng", "org-7"]
    rows = [
        _Pattern(
            rng.choice(words), rng.choice(["abuse", "ads", "politics", "custom"]), rng.choice(["block", "review"]),
            rng.choice(lists), rng.random() < 0.5, rng.random() < 0.5,
        )
        for _ in range(500)
    ]  # fmt: skip
    table = _PatternTable(rows)
    assert len(table) == len(rows)
    assert [table[i] for i in range(len(rows))] == rows
    assert table[10:20] == rows[10:20] and table[::-7] == rows[::-7]
    for protocol in (4, 5):
        again = pickle.loads(pickle.dumps(table, protocol=protocol))
        assert list(again) == rows
    assert list(_PatternTable([])) == []


def test_bigram_set_answers_like_a_frozenset() -> None:
    rng = random.Random(7)
    alphabet = "的了是不我你他比较傻逼啥a1😀𠀀\x00"
    words = {"".join(rng.choices(alphabet, k=2)) for _ in range(60)} | {"比较", "啥", "三个字"}
    common = _BigramSet(words)
    reference = frozenset(w for w in words if len(w) == 2)
    assert len(common) == len(reference)
    probes = ["".join(rng.choices(alphabet, k=k)) for k in (0, 1, 2, 2, 2, 3) for _ in range(300)]
    for probe in probes:
        assert (probe in common) == (len(probe) == 2 and probe in reference), probe
    assert 12 not in common and None not in common
    assert "啥" not in common and "三个字" not in common  # only two-character slices are ever tested
    assert not list(_BigramSet([])._keys) and "比较" not in _BigramSet([])


def test_packed_table_unpacks_to_the_table() -> None:
    table = {"傻": "sha", "逼": "bi", "𠀀": ""}
    packed = PackedTable.of(table)
    assert packed.unpack() == table
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(packed, protocol=5, buffer_callback=buffers.append)
    assert len(buffers) == 1  # out of band: the cache keeps it as file pages
    again = pickle.loads(data, buffers=[memoryview(bytes(b.raw())) for b in buffers])
    assert again.unpack() == table
    assert pickle.loads(pickle.dumps(packed, protocol=4)).unpack() == table


# One process compiles the default lexicon into a fresh cache directory and screens; another loads it from
# that cache, measures the Python objects the load left, screens the same texts, and reports which of the
# normaliser's packed tables screening unpacked (none) and what an organisation list compile then gives.
_SCRIPT = r"""
import json, sys, tracemalloc
from pathlib import Path
import moderation
from moderation import normalize as N
from moderation.lexicon import load_builtin
cache, texts = Path(sys.argv[1]), json.loads(sys.argv[2])
tracemalloc.start()
lex = load_builtin("default", cache_dir=cache)
python_mb = tracemalloc.get_traced_memory()[0] / 2**20
tracemalloc.stop()
screener = moderation.engine.Screener(lexicon=lex, classifier=None)
verdicts = [screener.screen(t).to_dict() for t in texts] + [v.to_dict() for v in screener.screen_batch(texts)]
packed = sorted(k for k, v in N._PRIMED.items() if isinstance(v, N.PackedTable))
org = screener.compile_org_lists(deny=[("傻狗", "abuse", "block")], allow=[], version=1, key="t")
org_hits = [v.to_dict() for v in screener.screen_batch(["sha狗 傻.狗", "你个傻狗"], org=org)]
pypinyin = "pypinyin" in sys.modules  # the compile reads its data files, not the package (~55 MB)
out = {"python_mb": python_mb, "verdicts": verdicts, "packed": packed, "org": org_hits, "pypinyin": pypinyin}
print(json.dumps(out))
"""


def test_a_process_reading_the_cache_holds_few_objects_and_screens_like_the_compiling_one(tmp_path: Path) -> None:
    texts = [
        *TEXTS,
        "cao你ma，S B，f.u.c.k，shabi，草泥马，薇信，啥比较好，杀笔",
        "①③⑧①②③④⑤⑥⑦⑧ 身份证110101199003074578 qq:12345678",
        "今天下午社区组织了植树活动，大家一起种了二十棵银杏树。" * 20,  # the vectorised normaliser (>= 400 chars)
        "㎏⑽ 艹 傻\u200b逼 五.星@红#旗",
    ]

    def run() -> dict[str, object]:
        out = subprocess.run(  # our own interpreter and script
            [sys.executable, "-c", _SCRIPT, str(tmp_path), json.dumps(texts)],
            check=True, capture_output=True, text=True, cwd=ROOT, timeout=240,
        )  # fmt: skip
        return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]

    compiled = run()
    assert list((tmp_path / "lexicon").glob("default-*.pickle"))
    cached = run()
    assert cached["verdicts"] == compiled["verdicts"]
    assert any(v["hits"] for v in cached["verdicts"])  # type: ignore[index, union-attr]
    assert cached["org"] == compiled["org"] and all(v["hits"] for v in cached["org"])  # type: ignore[union-attr]
    # screening never unpacked the pinyin tables (the org list compile above ran after this was read)
    assert cached["packed"] == ["_pinyin_arrays", "_pinyin_table"]
    # the compiling process adopted the tables it wrote, so it holds them packed too
    assert compiled["packed"] == ["_pinyin_arrays", "_pinyin_table"]
    assert compiled["pypinyin"] is False and cached["pypinyin"] is False
    # the lexicon as 70k named tuples, a frozenset and tables of Python objects held 72 MB; now a few MB of
    # strings the automata need (their patterns) and the translate table
    assert cached["python_mb"] < 16, cached["python_mb"]


def test_pinyin_table_from_the_data_files_is_pypinyins() -> None:
    from moderation import normalize as N

    ours = N._pinyin_table.__wrapped__()  # built now (not primed: nothing primes the wrapped function)
    reference = N._pinyin_table_from_package()
    # same entries in the same order: the order numbers the sound codes of the cached lexicon
    assert list(ours.items()) == list(reference.items()) and len(ours) > 40_000
    assert ours["绿"] == "lv" and ours["傻"] == "sha"


def test_numpy_arrays_of_the_pattern_table_are_compact() -> None:
    rows = [_Pattern(f"词{i}", "abuse", "block", "core", False, False) for i in range(1000)]
    table = _PatternTable(rows)
    arrays = [v for v in (getattr(table, k) for k in table.__slots__) if isinstance(v, np.ndarray)]
    # a few bytes a row (term id, category, severity, list, two flags) plus the joined terms and their ends
    assert sum(a.nbytes for a in arrays) <= 1000 * 17 + 8 * 1001
