"""The compiled lexicon loops (``moderation/_lexfast.c``) give exactly what the numpy path gives.

Differential tests: every text goes through the normaliser and the default lexicon twice, once with the
compiled loops and once inside ``fastpath.disabled()`` (the numpy code, itself compared with the
``str.translate`` + regex reference and with the whole-text search in test_moderation_fastpath.py), and every
field must agree: normalised text, code points, offset map, raw spans, ``Hit`` objects, pinyin views.

The sample is built from committed files only (union-news and ordinary sentences, list terms written in every
word style of ``moderation.disguise`` and in the disguises of test_moderation_fastpath.py, random strings of the
characters the normaliser treats specially), so a fresh clone runs it. Where the install did not build the
extension, the module fixture compiles it into a temporary folder (a C compiler is all it needs) and skips
only when there is none.
"""

from __future__ import annotations

import importlib.util
import random
import shutil
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from moderation import fastpath
from moderation.disguise import STYLES, disguise_all, load_keywords
from moderation.lexicon import (
    DATA_DIR,
    Lexicon,
    _compiled_gates,
    _merge_runs,
    _merge_small,
    _unique_rows,
    load_builtin,
    read_tsv,
)
from moderation.normalize import (
    _latin_windows_np,
    _normalize_compiled,
    _normalize_str,
    _normalize_vector,
    _vector_tables,
    char_pinyin,
    normalize,
    pinyin_view,
)

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "moderation" / "_lexfast.c"
DATA = ROOT / "tests" / "data"


def _build(tmp: Path) -> ModuleType:
    """Compile moderation/_lexfast.c into ``tmp`` and load it (as the install would have)."""
    from setuptools import Distribution, Extension

    dist = Distribution({"name": "lexfast-test", "ext_modules": [Extension("moderation._lexfast", [str(SOURCE)])]})
    cmd = dist.get_command_obj("build_ext")
    cmd.build_lib, cmd.build_temp = str(tmp / "lib"), str(tmp / "tmp")
    cmd.ensure_finalized()
    cmd.run()
    spec = importlib.util.spec_from_file_location("moderation._lexfast", cmd.get_ext_fullpath("moderation._lexfast"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    installed = fastpath.compiled()
    if installed is not None:
        yield installed
        return
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        pytest.skip(f"moderation._lexfast not built and no C compiler ({compiler}) to build it")
    module = _build(tmp_path_factory.mktemp("lexfast"))
    with fastpath.using(module):
        yield module


@pytest.fixture(scope="module")
def lexicon() -> Lexicon:
    return load_builtin("default")


_SPECIAL = "傻逼妈谢天一二三五八零〇0123abs bAB.@#_-~ ·，。！\n\u200b\u2060\ufe0f\u0301發財①❶ｓＳ\x00"


def _lines(name: str) -> list[str]:
    return [ln for ln in (DATA / name).read_text(encoding="utf-8").splitlines() if ln.strip() and ln[0] != "#"]


@pytest.fixture(scope="module")
def sample() -> list[str]:
    rng = random.Random(20261203)
    plain = [t for n in ("moderation_union_news_dev.txt", "moderation_union_news_test.txt") for t in _lines(n)]
    plain += _lines("moderation_ordinary_test.txt")
    terms = [e.term for e in read_tsv(DATA_DIR / "default.tsv")]
    # Sentences with list terms spliced in, then every word style of moderation.disguise over them.
    seeded = []
    for _ in range(300):
        t = rng.choice(plain)
        i = rng.randrange(len(t) + 1)
        seeded.append(t[:i] + rng.choice(terms) + t[i:])
    styles = disguise_all(seeded, load_keywords())
    texts = plain + seeded + [t for s in STYLES if s != "whole_text_pinyin" for t in styles[s]]
    # Pinyin by hand (the styles only disguise abuse terms) and random strings of special characters.
    for term in rng.sample(terms, 300):
        k = rng.randrange(len(term))
        texts.append(f"{rng.choice(plain)[:10]}{term[:k]}{char_pinyin(term[k]) or term[k]}{term[k + 1 :]}")
    texts += ["".join(rng.choice(_SPECIAL) for _ in range(rng.randint(0, 50))) for _ in range(1500)]
    texts += ["", "a", "傻", "\ud800傻逼", "x⑽y" * 200, "S B sha逼 沙币 草泥马 jb 法.轮.功 1三8零0一三八000"]
    # Batches as screen_batch joins them.
    rng.shuffle(texts)
    return texts + ["\n".join(texts[i : i + 64]) for i in range(0, len(texts), 64)]


def _offsets(norm: object) -> list[tuple[int, int]]:
    n = len(norm.text)  # type: ignore[attr-defined]
    return norm.spans(list(range(n)), list(range(1, n + 1))) if n else []  # type: ignore[attr-defined]


def test_compiled_normaliser_equals_numpy_and_reference(lib: ModuleType, sample: list[str]) -> None:
    compared = 0
    for text in sample:
        ref = _normalize_str(text)
        vec = _normalize_vector(text)
        got = _normalize_compiled(lib, text)
        assert (got is None) == (vec is None), text
        if got is None:
            continue  # a character that expands: both leave it to the reference path
        compared += 1
        assert got.text == vec.text == ref.text, text
        assert got.identity == vec.identity, text
        assert _offsets(got) == _offsets(vec) == _offsets(ref), text
        assert got.code_points().tobytes() == vec.code_points().tobytes(), text
        assert normalize(text).text == ref.text
    assert compared > len(sample) * 0.9


def test_compiled_matching_equals_numpy(lib: ModuleType, lexicon: Lexicon, sample: list[str]) -> None:
    hits = 0
    # lone surrogates included: the normaliser folds them to U+FFFD before the Aho-Corasick backends see them
    for text in sample:
        norm = normalize(text)
        fast_spans, fast_hits = lexicon.raw_spans(norm), lexicon.match(norm)
        with fastpath.disabled():
            plain = normalize(text)
            slow_spans, slow_hits = lexicon.raw_spans(plain), lexicon.match(plain)
        assert fast_spans.tolist() == slow_spans.tolist(), text
        assert fast_hits == slow_hits, text
        assert all(h.text == text[h.start : h.end] for h in fast_hits)
        hits += len(fast_hits)
    assert hits > 2000  # the sample really exercises every view (spelled, homophone, pinyin, sound)


def test_compiled_gates_equal_numpy_gates(lib: ModuleType, lexicon: Lexicon, sample: list[str]) -> None:
    for text in sample[-40:]:  # the batches
        cps = normalize(text).code_points()
        codes = np.take(lexicon._lut, cps)
        c, y = lexicon._gate.bigrams(codes, 0xFFFF)
        high = codes >> np.uint32(16)
        assert lexicon._sound_gate is not None
        specs = [
            lexicon._gate.spec(0, sparse=False, windows=True),
            lexicon._gate.spec(0, sparse=False, windows=False),
            lexicon._hom_gate.spec(0, sparse=True, windows=False),
            lexicon._sound_gate.spec(16, sparse=True, windows=False),
        ]
        got = _compiled_gates(lib, cps, lexicon._lut, specs)
        want = [
            lexicon._gate.windows(c, y),
            lexicon._gate.candidates(c, y),
            lexicon._hom_gate.sparse_candidates(c[: len(cps)]),
            lexicon._sound_gate.sparse_candidates(high),
        ]
        for (ga, gb), (wa, wb) in zip(got, want, strict=True):
            assert ga.tolist() == wa.tolist() and gb.tolist() == wb.tolist()


def test_compiled_pinyin_view_equals_numpy(lib: ModuleType, sample: list[str]) -> None:
    views = 0
    flags = _vector_tables()["flags"]
    for text in sample:
        norm = normalize(text).text
        cps = np.frombuffer(norm.encode("utf-32-le", "surrogatepass"), np.uint32)
        a, b = lib.latin_windows(cps, flags, 8)
        wa, wb = _latin_windows_np(cps)
        assert np.frombuffer(a, np.int64).tolist() == wa.tolist() and np.frombuffer(b, np.int64).tolist() == wb.tolist()
        got = pinyin_view(norm)
        with fastpath.disabled():
            want = pinyin_view(norm)
        assert (got is None) == (want is None), text
        if got is None or want is None:
            continue
        views += 1
        assert got.text == want.text, text
        assert got.bounds.tolist() == want.bounds.tolist() and got.src.tolist() == want.src.tolist()
        assert got.latin.tolist() == want.latin.tolist()
    assert views > 200


def test_vectorised_source_spans_equal_the_scalar_one(sample: list[str]) -> None:
    checked = 0
    for text in sample[:3000]:
        view = pinyin_view(normalize(text).text)
        if view is None:
            continue
        n = min(len(view.text), 40)
        pairs = [(s, e) for s in range(n) for e in range(s + 1, min(n, s + 14) + 1)]
        ok, a, b = view.source_spans([p[0] for p in pairs], [p[1] for p in pairs])
        for j, (s, e) in enumerate(pairs):
            assert view.source_span(s, e) == ((int(a[j]), int(b[j])) if ok[j] else None), (text, s, e)
        checked += int(ok.sum())
    assert checked > 100


def test_list_folding_equals_array_folding(lexicon: Lexicon) -> None:
    rng = random.Random(7)
    cats = lexicon._cat_code
    # A few patterns of each category, so that spans of one category overlap often.
    by_cat: dict[int, list[int]] = {}
    for i in range(0, len(lexicon), 97):
        by_cat.setdefault(int(cats[i]), []).append(i)
    pool = [i for v in by_cat.values() for i in v[:3]]
    for _ in range(5000):
        rows = []
        for _ in range(rng.randint(0, 14)):
            s = rng.randint(0, 15)
            rows.append((rng.choice(pool), s, s + rng.randint(1, 6), rng.choice([0, 0, 1])))
        rows += rows[: rng.randint(0, 2)]  # exact duplicates: ties keep their order in both
        spans = np.array(rows, dtype=np.int64).reshape(-1, 4)
        allow = [(a, a + rng.randint(1, 6)) for a in (rng.randint(0, 15) for _ in range(rng.randint(0, 3)))]
        assert lexicon._fold(spans, allow) == lexicon._fold_small(spans, allow), (rows, allow)


def test_extension_refuses_tables_of_the_wrong_size(lib: ModuleType, lexicon: Lexicon) -> None:
    cps = normalize("傻逼").code_points()
    spec = list(lexicon._gate.spec(0, sparse=False, windows=True))
    spec[4] = np.zeros(16, dtype=np.uint8)  # a bigram table smaller than its mask
    with pytest.raises(ValueError, match="table sizes"):
        lib.gates(cps, lexicon._lut, (tuple(spec),))
    with pytest.raises(ValueError, match="one uint32 per code point"):
        lib.gates(cps, lexicon._lut[:100], (lexicon._gate.spec(0, sparse=False, windows=True),))
    with pytest.raises(ValueError, match="expected"):
        lib.set_norm_tables(*(np.zeros(10, dtype=np.uint8) for _ in range(5)))
    assert _normalize_compiled(lib, "傻.逼") is not None  # a refused set_norm_tables keeps the tables it had


def test_small_helpers_equal_their_numpy_forms() -> None:
    rng = random.Random(11)
    for _ in range(3000):
        rows = np.array(
            [[rng.randint(0, 5), rng.randint(0, 9), rng.randint(0, 9)] for _ in range(rng.randint(1, 30))],
            dtype=np.int64,
        )
        assert _unique_rows(rows).tolist() == np.unique(rows, axis=0).tolist()
        starts = sorted(rng.randint(0, 40) for _ in range(rng.randint(1, 12)))
        ends = [s + rng.randint(1, 8) for s in starts]
        a, b = _merge_runs(np.array(starts), np.array(ends))
        assert _merge_small(list(zip(starts, ends, strict=True))) == list(zip(a.tolist(), b.tolist(), strict=True))
