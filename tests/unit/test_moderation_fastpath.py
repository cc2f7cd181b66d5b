"""The fast lexicon path gives exactly what the reference paths give, and its cache round-trips.

Differential tests over generated text: the vectorised normaliser against the ``str.translate`` + regex
reference, the gated automata (pre-checks, windows, compacted search) against the whole-text search
(``Lexicon.raw_spans(exhaustive=True)`` and the allow-list over the whole text), the vectorised pinyin windows
against the loop they replaced. Texts are built from list terms in disguise, so the hits are many and varied.
"""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import numpy as np
import pytest

from moderation import lexicon as lexicon_module
from moderation.lexicon import DATA_DIR, Entry, Lexicon, load_builtin, read_tsv
from moderation.normalize import (
    HOMOPHONES,
    _latin_windows,
    _latin_windows_np,
    _normalize_str,
    _normalize_vector,
    char_pinyin,
    normalize,
)

_FILLER = [
    "市总工会召开全委会议，传达学习重要讲话精神。",
    "今天天气很好，我们去公园散步吧！",
    "（记者 张三）2024年职工运动会报名开始",
    "联系电话：一三八 零零一三 八零零零",
    "APP下载 b站 nba gdp 5G",
    "妈妈说谢谢，哈哈哈哈",
    "a.b@x.com 和 www.qq.com",
    "\u200b",
    " ",
    "\n",
]
_SEPARATORS = ".@#*_-~ \u200b/"


def _disguise(term: str, rng: random.Random) -> str:
    """One term written the ways people write it to slip past a list."""
    style = rng.randrange(7)
    if style == 0:
        return "".join(ch + (rng.choice(_SEPARATORS) if rng.random() < 0.5 else "") for ch in term)
    if style == 1:  # one character in pinyin
        i = rng.randrange(len(term))
        return term[:i] + (char_pinyin(term[i]) or term[i]) + term[i + 1 :]
    if style == 2:  # every character in pinyin, maybe spaced
        return rng.choice(["", " "]).join(char_pinyin(ch) or ch for ch in term)
    if style == 3:  # repeated characters
        return "".join(ch * rng.choice([1, 1, 2, 3]) for ch in term)
    if style == 4:  # a homophone spelling somewhere
        variant, _ = rng.choice(list(HOMOPHONES.items()))
        return term + variant
    if style == 5:  # upper case / full width
        return "".join(chr(ord(c.upper()) + 0xFEE0) if c.isascii() and c.isalnum() else c for c in term)
    return term


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    rng = random.Random(20261202)
    terms = [e.term for e in read_tsv(DATA_DIR / "default.tsv")]
    sound = (DATA_DIR / "sound.txt").read_text(encoding="utf-8").split()
    texts = []
    for _ in range(400):
        parts = []
        for _ in range(rng.randint(1, 6)):
            r = rng.random()
            if r < 0.45:
                parts.append(rng.choice(_FILLER))
            elif r < 0.9:
                parts.append(_disguise(rng.choice(terms), rng))
            else:
                parts.append(rng.choice(sound))
        texts.append("".join(parts))
    return texts


@pytest.fixture(scope="module")
def lexicon() -> Lexicon:
    return load_builtin("default")


def _orig_map(norm: object) -> list[tuple[int, int]]:
    n = len(norm.text)  # type: ignore[attr-defined]
    return norm.spans(list(range(n)), list(range(1, n + 1))) if n else []  # type: ignore[attr-defined]


def test_vector_normaliser_equals_reference_on_generated_text(corpus: list[str]) -> None:
    rng = random.Random(3)
    alphabet = "傻逼妈谢天一二三五八零0123abs bAB.@#_-~，。！\n\u200b\u0301發財①❶ｓ"
    texts = ["\n".join(corpus[i : i + 20]) for i in range(0, len(corpus), 20)]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 60))) for _ in range(300)]
    for text in texts:
        vec, ref = _normalize_vector(text), _normalize_str(text)
        assert vec is not None
        assert vec.text == ref.text, text
        assert _orig_map(vec) == _orig_map(ref), text
        assert vec.code_points().tobytes() == np.frombuffer(ref.text.encode("utf-32-le"), np.uint32).tobytes()


def test_gated_matching_equals_whole_text_search(corpus: list[str], lexicon: Lexicon) -> None:
    batches = ["\n".join(corpus[i : i + 25]) for i in range(0, len(corpus), 25)] + corpus[:100]
    total = 0
    for text in batches:
        norm = normalize(text)
        fast = lexicon.raw_spans(norm)
        slow = lexicon.raw_spans(norm, exhaustive=True)
        assert sorted(map(tuple, fast.tolist())) == sorted(map(tuple, slow.tolist())), text
        hits = lexicon.match(norm)
        reference = lexicon.to_hits(norm, slow, lexicon.allow_spans(norm.text)) if len(slow) else []
        assert hits == reference, text
        total += len(hits)
    assert total > 500  # the generated text really exercises the matcher (disguised list terms)


def test_vectorised_pinyin_windows_equal_the_loop(corpus: list[str]) -> None:
    for text in [*corpus, "sha逼", "a傻b", "傻" * 20 + "x" + "逼" * 20, "abc", "傻逼"]:
        norm = normalize(text).text
        cps = np.frombuffer(norm.encode("utf-32-le"), np.uint32)
        a, b = _latin_windows_np(cps)
        assert list(zip(a.tolist(), b.tolist(), strict=True)) == _latin_windows(norm)


def test_lexicon_pickles_with_the_same_matches() -> None:
    entries = [Entry("傻逼", "abuse", "block"), Entry("法轮功", "politics", "block"), Entry("sb", "abuse", "review")]
    for backend in lexicon_module.BACKENDS:
        lex = Lexicon(entries, ["南京市长江大桥"], backend=backend, sound=["傻逼"])
        again = pickle.loads(pickle.dumps(lex))
        for text in ["你个sha逼 法.轮.功 沙币 S B", "南京市长江大桥", "啥比较好"]:
            assert again.match(normalize(text)) == lex.match(normalize(text))


def test_builtin_cache_is_written_once_keyed_by_inputs_and_survives_damage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = [Entry("傻逼", "abuse", "block"), Entry("加微信", "ads", "review")]
    monkeypatch.setattr(lexicon_module, "read_tsv", lambda path: small)  # a small list: the test stays fast
    load_builtin.cache_clear()
    try:
        first = load_builtin("default", cache_dir=tmp_path)
        files = list((tmp_path / "lexicon").glob("default-*.pickle"))
        assert len(files) == 1
        load_builtin.cache_clear()
        # Read back from the file, not compiled: a compile would call read_tsv, which now fails.
        monkeypatch.setattr(lexicon_module, "read_tsv", lambda path: pytest.fail("compiled again"))
        second = load_builtin("default", cache_dir=tmp_path)
        text = normalize("你个傻.逼，加微信")
        assert second.match(text) == first.match(text) and len(first.match(text)) == 2
        # A damaged file is rebuilt, not trusted, and replaced atomically (no temporary file left behind).
        files[0].write_bytes(b"not a pickle")
        load_builtin.cache_clear()
        monkeypatch.setattr(lexicon_module, "read_tsv", lambda path: small)
        third = load_builtin("default", cache_dir=tmp_path)
        assert third.match(text) == first.match(text)
        assert [p.name for p in (tmp_path / "lexicon").iterdir()] == [files[0].name]
        # Another input (or code) version is another file; the old one is removed.
        monkeypatch.setattr(lexicon_module, "_CACHE_FORMAT", lexicon_module._CACHE_FORMAT + 1)
        load_builtin.cache_clear()
        load_builtin("default", cache_dir=tmp_path)
        names = [p.name for p in (tmp_path / "lexicon").iterdir()]
        assert len(names) == 1 and names != [files[0].name]
    finally:
        load_builtin.cache_clear()
