"""Lexicon matching through the public screen(): disguises caught with original offsets, allow-lists, org lists."""

from __future__ import annotations

import pytest

import moderation
from moderation.lexicon import BACKENDS, DATA_DIR, Entry, Lexicon, load_builtin, read_tsv
from moderation.normalize import normalize
from moderation.types import LexiconError

pytestmark = pytest.mark.usefixtures("rules_only")  # tests/conftest.py: lexicon and PII rules, no classifier


def lexicon_hits(text: str) -> list[moderation.Hit]:
    return [h for h in moderation.screen(text).hits if h.source == "lexicon"]


@pytest.mark.parametrize(
    ("text", "term", "span_text"),
    [
        ("你就是个傻逼吧", "傻逼", "傻逼"),  # plain
        ("你就是个傻.逼吧", "傻逼", "傻.逼"),  # inserted symbol
        ("你就是个傻\u200b逼吧", "傻逼", "傻\u200b逼"),  # zero-width
        ("你就是个傻傻傻逼吧", "傻逼", "傻傻傻逼"),  # repeats
        ("你就是个沙比吧", "傻逼", "沙比"),  # homophone
        ("你就是个sha逼吧", "傻逼", "sha逼"),  # mixed pinyin
        ("you are shabi ok", "傻逼", "shabi"),  # full pinyin
        ("caonima", "操你妈", "caonima"),  # full pinyin of a core term (shown with its core spelling)
        ("你就是个sb吧", "sb", "sb"),  # initials
        ("你就是个 S B 吧", "sb", "S B"),  # spaced-out initials
        ("草泥马", "操你妈", "草泥马"),  # homophone phrase
        ("卖法.轮.功资料", "法轮功", "法.轮.功"),
        ("法輪功", "法轮功", "法輪功"),  # traditional
        ("Ⓕⓤc⒦ you", "fuck you", "Ⓕⓤc⒦ you"),  # enclosed letters
        ("ＦＵＣＫ ＹＯＵ", "fuck you", "ＦＵＣＫ ＹＯＵ"),  # full-width
        ("网上博.彩，注册送彩金", "网上博彩", "网上博.彩"),
    ],
)
def test_disguise_caught_with_original_offsets(text: str, term: str, span_text: str) -> None:
    hits = lexicon_hits(text)
    found = [h for h in hits if h.term == term]
    assert found, f"{term} not found in {text!r}: {hits}"
    h = found[0]
    assert h.text == text[h.start : h.end] == span_text


def test_short_pinyin_of_list_terms_is_not_matched_in_latin_text() -> None:
    # "suyang" is the pinyin of a porn term from the raw lists, and also a name
    assert lexicon_hits("I met suyang today") == []


def test_latin_term_needs_word_boundaries() -> None:
    assert not [h for h in lexicon_hits("插上usb接口") if h.term == "sb"]
    assert not [h for h in lexicon_hits("this is bad") if h.term == "sb"]


@pytest.mark.parametrize(
    "text",
    [
        "市总工会召开全委会议，传达学习习近平总书记重要讲话精神。",
        "南京市长江大桥今天正式通车。",
        "你妈妈的手艺真好。",
        "工会组织职工观看红色电影。",
        "同志们，我们要做好安全生产工作。",
    ],
)
def test_ordinary_text_passes(text: str) -> None:
    v = moderation.screen(text)
    assert v.decision == "pass", v.hits


def test_builtin_allow_list_suppresses_covered_hit() -> None:
    lex = Lexicon([Entry("江大桥", "custom", "block")], allow=["南京市长江大桥"])
    assert lex.match(normalize("南京市长江大桥")) == []
    assert [h.term for h in lex.match(normalize("他叫江大桥"))] == ["江大桥"]


def test_org_lists_versioned_and_allow_suppresses_default_terms() -> None:
    screener = moderation.get_screener()
    v1 = screener.compile_org_lists(deny=[("内部代号", "custom", "block")], allow=[], version=1, key="org-7")
    assert moderation.screen("这是内部代号", org=v1).decision == "reject"
    # same version: cached object, the (different) lists passed are not even read
    assert screener.compile_org_lists(deny=[("别的", "custom", "block")], version=1, key="org-7") is v1
    v2 = screener.compile_org_lists(
        deny=[("内部代号", "custom", "review")], allow=["网上博彩专项整治"], version=2, key="org-7"
    )
    assert moderation.screen("这是内部代号", org=v2).decision == "review"
    # the organisation's allow-list covers a built-in block term
    assert moderation.screen("开展网上博彩专项整治", org=v2).decision == "pass"
    assert moderation.screen("网上博彩").decision == "reject"
    # default allow-list protects against an organisation's deny term as well
    v3 = screener.compile_org_lists(deny=[("江大桥", "custom", "block")], version=3, key="org-7")
    assert moderation.screen("南京市长江大桥", org=v3).decision == "pass"
    assert "org-7:v3" in moderation.screen("x", org=v3).lexicon_version


def test_org_list_rejects_bad_entries() -> None:
    screener = moderation.get_screener()
    with pytest.raises(LexiconError):
        screener.compile_org_lists(deny=[("词", "nonsense", "block")], version=1, key="bad")
    with pytest.raises(LexiconError):
        screener.compile_org_lists(deny=[("词", "custom")], version=2, key="bad")  # type: ignore[list-item]


def test_backends_agree() -> None:
    entries = read_tsv(DATA_DIR / "default.tsv")
    sample = entries[:3000]
    texts = ["你就是个傻.逼吧，加微信领取彩金，法.轮.功", "工会开会", "sha逼 cao你ma 出售仿真枪"]
    results = []
    for backend in BACKENDS:
        lex = Lexicon([*sample, Entry("傻逼", "abuse", "block")], backend=backend)
        results.append([sorted((h.term, h.start, h.end) for h in lex.match(normalize(t))) for t in texts])
    assert results[0] == results[1]


def test_shipped_lexicons_are_big_and_categorised() -> None:
    default = load_builtin("default")
    assert len(default) > 10_000
    ext = read_tsv(DATA_DIR / "extended.tsv")
    assert len(ext) >= 60_000
    assert {e.category for e in ext} <= set(moderation.CATEGORIES)
    assert default.version.startswith("builtin-")


@pytest.mark.parametrize("with_expansion", [False, True])
def test_batch_evidence_equals_one_by_one(with_expansion: bool) -> None:
    texts = [
        "你就是个傻.逼吧",
        "工会开会\n第二行",
        "",
        "订单号13800138000",
        "手机：一三八零零一三八零零零",
        "加微信",
        "12345678 is not qq",
        "南京市长江大桥" * 80,  # long enough for the vectorised path on its own
        "sha逼 草泥马 法.轮.功 ",
        "Ⓕⓤc⒦ you",
    ]
    if with_expansion:  # an expanding character sends the whole batch down the reference path
        texts.append("x⑽y")
    screener = moderation.get_screener()
    org = screener.compile_org_lists(deny=[("第二行", "custom", "review")], version=1, key="batch")
    batch = screener.evidence_batch(texts, org)
    for text, (norm_text, hits) in zip(texts, batch, strict=True):
        single_norm, single_hits = screener.evidence(text, org)
        assert norm_text == single_norm.text
        assert hits == single_hits
        assert all(text[h.start : h.end] == h.text for h in hits)
    assert [v.decision for v in moderation.screen_batch(texts)] == [moderation.screen(t).decision for t in texts]


def test_ordinary_text_sets_mostly_pass() -> None:
    from pathlib import Path

    data = Path(__file__).parents[1] / "data"
    texts = [
        line.strip()
        for name in ("moderation_union_news_test.txt", "moderation_ordinary_test.txt")
        for line in (data / name).read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert len(texts) == 100
    verdicts = moderation.screen_batch(texts)
    flagged = [t for t, v in zip(texts, verdicts, strict=True) if v.decision != "pass"]
    assert len(flagged) <= 2, flagged  # a regression guard: 0 at the time of writing


@pytest.mark.parametrize(
    ("text", "term", "shown"),
    [("你是沙币吗", "傻逼", "沙币"), ("你个杀笔", "傻逼", "杀笔"), ("黑龟滚出去", "黑鬼", "黑龟")],
)
def test_sound_alike_spelling_goes_to_review(text: str, term: str, shown: str) -> None:
    v = moderation.screen(text)
    (h,) = [h for h in v.hits if h.term == term]
    assert h.text == shown == text[h.start : h.end]
    assert h.list.endswith("~sound") and h.severity == "review" and v.decision == "review"


@pytest.mark.parametrize("text", ["啥比较好", "春节祝福送给大家", "自己老了", "推销日本货"])
def test_sound_alike_inside_ordinary_words_is_vetoed(text: str) -> None:
    assert moderation.screen(text).decision == "pass"


def test_spelled_block_hit_is_not_weakened_by_a_sound_alike() -> None:
    v = moderation.screen("草你妈逼")
    assert v.decision == "reject"
    assert moderation.screen("傻逼").hits[0].list == "core"  # spelled: the real list and severity


def test_sound_alike_found_in_a_batch_after_rare_ideographs() -> None:
    texts = ["麻烦您不要頔域黑加歧视。", "s一下畑园女权eas"]
    hits = [[h.text for h in v.hits] for v in moderation.screen_batch(texts)]
    assert hits == [["頔域黑"], ["畑园女权"]]
