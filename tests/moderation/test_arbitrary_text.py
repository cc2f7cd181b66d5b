"""The moderation engine takes any ``str`` an editor can paste: never an exception, evidence inside the text,
and the compiled and numpy paths agree (issue 14).

A property-based fuzz (hypothesis, derandomised so a failure reproduces) over texts built from the code points
that break text code: lone surrogates (half an emoji cut by a JavaScript slice), combining marks, zero-width
and bidirectional controls, private-use characters (the lexicon's own sound codes live at U+F0000), astral
emoji, noncharacters (U+FFFE, U+FFFF), NUL and U+0001 (the normaliser's own markers), line breaks (the batch
joiner and the compacted windows' barrier), expanding characters (⑽, ㎏), long runs of one character, and list
terms and personal data spliced in among them so the matchers have something to find. For every text:

* the normaliser's three implementations (compiled, numpy, ``str.translate`` + regex) give the same text and
  offset map, and the text they give can be encoded (the automata and the classifier's tokenizer read UTF-8);
* ``Lexicon.match`` / ``raw_spans`` and the personal-data detectors give the same results on the compiled
  path and inside ``fastpath.disabled()``, and every hit lies inside the original text with
  ``hit.text == text[hit.start:hit.end]``;
* ``moderation.screen_batch`` with the classifier off gives the same verdicts on both paths and the same
  evidence as screening each text alone, every hit inside its own text.

Where the install did not build the extension, the compiled side is built into a temporary folder (as in
tests/unit/test_moderation_compiled.py) and skipped only without a C compiler.
"""

from __future__ import annotations

import os
import shutil
import sysconfig
import time
from collections.abc import Iterator
from types import ModuleType

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import moderation
from moderation import fastpath
from moderation.lexicon import DATA_DIR, Lexicon, load_builtin, read_tsv
from moderation.normalize import Normalized, _normalize_str, _normalize_vector, normalize
from moderation.pii import detect
from moderation.types import Hit
from tests.unit.test_moderation_compiled import _build
from tests.unit.test_moderation_pii import CARD, GOOD_ID

# Examples per property; MATRIX_TEXT_FUZZ_EXAMPLES raises it for a longer run by hand (the default keeps the
# file under ~15 s on a shared 2-core machine).
EXAMPLES = int(os.environ.get("MATRIX_TEXT_FUZZ_EXAMPLES", "300"))
_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # nothing saved under the working tree, nothing replayed: each run is the same
    derandomize=True,  # the same texts every run: a failure here is reproducible
    # function_scoped_fixture: ``rules_only`` sets the configuration once for all the examples, as meant.
    suppress_health_check=[
        HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example,
        HealthCheck.function_scoped_fixture,
    ],
)  # fmt: skip


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The compiled loops: the installed build, or one made here (skipped without a C compiler)."""
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


# ------------------------------------------------------------------------------------------- the texts

_INVISIBLE = "\u200b\u200c\u200d\u2060\u2061\ufeff\u00ad\u034f\u180e\ufe0f\U000e0041\U000e0100"
_BIDI = "\u200e\u200f\u061c\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_SPECIAL = "\x00\x01\x02\x7f\n\r\t \u2028\u2029\x85\ufffe\uffff\ufffd\U0010ffff\U000f0000\U000f0001\U000f03ff"
_FOLDED = "⑽⒦㎏ﬁ…①③⑧❶⓵ｓＳ１３８🅰🇦ᴀаο艹發財傻逼妈谢天一二三五八零〇幺·，。！？；：、「」（）《》“”"
_SEPARATORS = ".@#*_-~ /·"
_FILLER = [
    "市总工会召开全委会议，传达学习重要讲话精神。", "今天天气很好", "APP下载 b站 nba gdp 5G", "www.qq.com/13800138000",
]  # fmt: skip
# Personal data in the forms the detectors look for (the ID and card numbers pass their checks).
_PII = [
    "13800138000", "138 0013-8000", "一三八零零一三八零零零", GOOD_ID, CARD, "a.b@x.com", "微信：abc_12345", "qq 12345",
]  # fmt: skip


def _terms() -> list[str]:
    """A spread of default-list terms (every 97th: Chinese, Latin, mixed), plus the homophone and pinyin
    spellings the extra views exist for."""
    terms = [e.term for e in read_tsv(DATA_DIR / "default.tsv")][::97]
    return [*terms, "草泥马", "沙币", "sha逼", "傻b", "s b", "sb", "jb", "法.轮.功", "fuck", "cnm", "shabi"]


_TERMS = _terms()


def _code_points(lo: int, hi: int) -> st.SearchStrategy[str]:
    return st.integers(lo, hi).map(chr)


_NASTY = st.one_of(
    _code_points(0xD800, 0xDFFF),  # lone surrogates, high and low
    _code_points(0x0300, 0x036F),  # combining marks
    _code_points(0x20D0, 0x20FF),
    st.sampled_from(_INVISIBLE + _BIDI + _SPECIAL),
    _code_points(0xE000, 0xF8FF),  # private use: BMP and both supplementary planes
    _code_points(0xF0000, 0xFFFFD),
    _code_points(0x100000, 0x10FFFD),
    _code_points(0x1F300, 0x1FAFF),  # astral emoji
    _code_points(0x20000, 0x2A6DF),  # CJK extension B (ideographs outside the BMP)
    _code_points(0x30000, 0x3134A),  # CJK extension G: word characters, but not ideographs to the normaliser
    _code_points(0x31350, 0xEFFFF),  # planes 3-14: mostly unassigned (separators), tags, variation selectors
    st.sampled_from(_FOLDED + _SEPARATORS),
    st.characters(exclude_categories=()),  # anything at all, surrogates included
)
_PIECE = st.one_of(
    _NASTY,
    st.sampled_from(_TERMS),
    st.sampled_from(_PII),
    st.sampled_from(_FILLER),
    st.tuples(_NASTY | st.sampled_from("傻逼妈谢a1 .\u200b"), st.integers(2, 700)).map(lambda p: p[0] * p[1]),
)
TEXTS = st.lists(_PIECE, max_size=24).map("".join)
BATCHES = st.lists(TEXTS, min_size=1, max_size=6)

# Texts that crashed the engine before the normaliser folded lone surrogates (issue 14), on one path or both.
_KNOWN = ["\ud800", "傻逼\udfff", "草泥马\ud83d", "13800138000\udc00", "sha\ud800逼", "x" * 500 + "\ud800傻逼"]


# ------------------------------------------------------------------------------------------- the checks


def _offsets(norm: Normalized) -> list[tuple[int, int]]:
    n = len(norm.text)
    return norm.spans(list(range(n)), list(range(1, n + 1))) if n else []


def _assert_inside(text: str, hits: list[Hit]) -> None:
    for h in hits:
        assert 0 <= h.start < h.end <= len(text), (text, h)
        assert h.text == text[h.start : h.end], (text, h)


def _check_normaliser(text: str) -> None:
    ref = _normalize_str(text)
    ref.text.encode("utf-8")  # the matcher's view is valid Unicode: the automata and tokenizers encode it
    assert len(_offsets(ref)) == len(ref.text)
    assert all(0 <= a < b <= len(text) for a, b in _offsets(ref)), text
    for got in (normalize(text), _normalize_vector(text)):
        if got is None:
            continue  # an expanding character: the vectorised path leaves it to the reference
        assert got.text == ref.text, text
        assert _offsets(got) == _offsets(ref), text
        assert got.code_points().tolist() == [ord(c) for c in ref.text], text
    with fastpath.disabled():
        assert normalize(text).text == ref.text, text


def _evidence(lexicon: Lexicon, text: str) -> tuple[list[list[int]], list[Hit], list[Hit]]:
    norm = normalize(text)
    return lexicon.raw_spans(norm).tolist(), lexicon.match(norm), detect(norm)


@_SETTINGS
@given(text=TEXTS)
@example(text="".join(_KNOWN))
def test_normaliser_lexicon_and_pii_on_any_text(lib: ModuleType, lexicon: Lexicon, text: str) -> None:
    _check_normaliser(text)
    spans, hits, pii = _evidence(lexicon, text)
    with fastpath.disabled():
        plain_spans, plain_hits, plain_pii = _evidence(lexicon, text)
    assert spans == plain_spans, text
    assert hits == plain_hits, text
    assert pii == plain_pii, text
    _assert_inside(text, hits + pii)


@pytest.mark.parametrize("text", _KNOWN)
def test_known_crashes(lib: ModuleType, lexicon: Lexicon, text: str) -> None:
    """The texts of the issue, one at a time: the lone surrogate is a separator (as every non-word character
    is), so the term around it is still found, and its hit's text is the original one, surrogate included."""
    _check_normaliser(text)
    for path in ("compiled", "numpy"):
        with fastpath.disabled() if path == "numpy" else fastpath.using(lib):
            hits = lexicon.match(normalize(text)) + detect(normalize(text))
        _assert_inside(text, hits)
        if "傻逼" in text or "草泥马" in text or "sha\ud800逼" in text:
            assert any(h.category == "abuse" for h in hits), (path, text, hits)
        if text.startswith("13800138000"):
            assert [h.term for h in hits if h.source == "pii"] == ["mobile"], (path, hits)


@_SETTINGS
@given(texts=BATCHES)
@example(texts=_KNOWN)
def test_screen_batch_on_any_texts(lib: ModuleType, rules_only: None, texts: list[str]) -> None:
    verdicts = moderation.screen_batch(texts)
    with fastpath.disabled():
        plain = moderation.screen_batch(texts)
    assert verdicts == plain, texts
    for text, verdict in zip(texts, verdicts, strict=True):
        _assert_inside(text, verdict.hits)
        # One text alone: the same evidence as inside the batch (nothing crosses the joining line breaks).
        assert moderation.screen(text).hits == verdict.hits, text


# Long texts made of one construction that took quadratic time before the fix at its cause (seconds measured
# then, compiled path, this machine): a text made of homophone spellings (every match compared with every
# spelling, moderation/lexicon.py: 9 s), runs of domain characters before a "/" (the URL pattern retried from
# inside the run, moderation/pii.py: 37 s, 9 s, 8 s). Each now takes under 0.5 s; the bound leaves room for a
# loaded machine and still fails on the quadratic versions.
_LONG = {
    "homophones": "草泥马" * 27_000,
    "letters before a slash": "a" * 40_000 + "/",
    "dotted labels before a slash": "a." * 20_000 + "/",
    "digits before a slash": "1" * 20_000 + "/",
}
_LONG_BOUND_S = 4.0


@pytest.mark.parametrize("name", sorted(_LONG))
def test_long_runs_take_linear_time(lib: ModuleType, rules_only: None, name: str) -> None:
    text = _LONG[name]
    for path in ("compiled", "numpy"):
        with fastpath.disabled() if path == "numpy" else fastpath.using(lib):
            t0 = time.perf_counter()
            verdict = moderation.screen(text)
            took = time.perf_counter() - t0
        _assert_inside(text, verdict.hits)
        assert took < _LONG_BOUND_S, f"{name} ({len(text):,} chars, {path}): {took:.1f} s"


# Organisation lists are typed by people too: terms from the same pieces, a few characters each.
_ORG_TERM = st.lists(
    st.one_of(_NASTY, st.sampled_from(_TERMS), st.sampled_from("坏好人\n")), min_size=1, max_size=4
).map("".join)


@_SETTINGS
@given(deny=st.lists(_ORG_TERM, max_size=6), allow=st.lists(_ORG_TERM, max_size=3), texts=BATCHES)
# Terms spanning a line break matched across the texts of a batch (and across the windows a search joins).
@example(deny=["坏\n好", "坏好"], allow=["a\nb", "坏\n坏好"], texts=["x坏", "好y", "坏", "坏好"])
def test_org_lists_of_any_terms(
    lib: ModuleType, rules_only: None, deny: list[str], allow: list[str], texts: list[str]
) -> None:
    """An organisation's own terms, whatever they hold, compile and screen like the default list: same
    verdicts on both paths, evidence inside its text, the same alone as in a batch."""
    screener = moderation.get_screener()
    org = screener.compile_org_lists(
        deny=[(t, "custom", "block") for t in deny], allow=allow, version=1, key=repr((deny, allow))
    )
    texts = [*texts, *deny]  # each term written as it is, so the org list has something to find
    verdicts = moderation.screen_batch(texts, org=org)
    with fastpath.disabled():
        plain = moderation.screen_batch(texts, org=org)
    assert verdicts == plain, (deny, allow, texts)
    for text, verdict in zip(texts, verdicts, strict=True):
        _assert_inside(text, verdict.hits)
        assert moderation.screen(text, org=org).hits == verdict.hits, (deny, allow, text)
