"""Pinyin spellings (sha bi, sb, shabi, 傻b, s逼), group words, mention frames and the disguise generator."""

from __future__ import annotations

import pytest

import moderation
from moderation.context import is_mention
from moderation.disguise import STYLES, disguise, disguise_all, keyword_spans
from moderation.lexicon import Entry, Lexicon
from moderation.normalize import normalize
from moderation.policy import Policy
from moderation.spelling import pinyin_spellings

pytestmark = pytest.mark.usefixtures("rules_only")


def test_spellings_of_a_term() -> None:
    got = dict(pinyin_spellings("傻逼"))
    assert got["sha逼"] == got["傻b"] == got["s逼"] == got["傻bi"] == "mixed"
    assert got["shabi"] == got["sha bi"] == "full"
    assert got["sb"] == "initials"
    assert got["shab"] == got["s bi"] == "partial"
    assert "s b" not in got  # the normaliser joins spaced single letters itself
    assert pinyin_spellings("傻") == [] and pinyin_spellings("fuck") == []


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("你就是个sha bi吧", "sha bi"),
        ("你就是个shabi吧", "shabi"),
        ("你就是个傻b吧", "傻b"),
        ("你就是个s逼吧", "s逼"),
        ("你就是个煞笔吧", "煞笔"),
        ("你就是个傻 B吧", "傻 B"),
        ("你就是个SHA BI吧", "SHA BI"),
    ],
)
def test_pinyin_disguises_of_an_insult_are_caught_with_offsets(text: str, shown: str) -> None:
    v = moderation.screen(text)
    (h,) = [h for h in v.hits if h.term in ("傻逼", "煞笔")]
    assert h.text == shown == text[h.start : h.end]
    assert v.decision != "pass"


@pytest.mark.parametrize("text", ["I met Shuo today", "a shabby coat", "黑人mm的衣服", "用了 sqlite", "他说了r你好"])
def test_pinyin_spellings_spare_ordinary_text(text: str) -> None:
    assert moderation.screen(text).decision == "pass"


def test_group_word_alone_sends_nothing_to_review() -> None:
    lex = Lexicon([Entry("河南人", "politics", "review"), Entry("骗子", "fraud", "block")], group_words=["河南人"])
    screener = moderation.engine.Screener(lexicon=lex, classifier=None)
    v = screener.screen("我是河南人")
    assert v.decision == "pass" and v.hits[0].list.endswith("~group") and "politics" not in v.categories
    assert screener.screen("河南人都是骗子").decision == "reject"  # the insult decides
    strict = Policy.default().with_overrides({"group_action": "review"})
    assert screener.screen("我是河南人", policy=strict).decision == "review"


def test_quoting_an_insult_is_softer_than_using_it() -> None:
    assert is_mention("不要说“傻逼”", 4, 6)
    assert is_mention("骂人脏话傻逼", 4, 6)
    assert not is_mention("你就是个傻逼", 4, 6)
    v = moderation.screen("请不要说“傻逼”这种脏话")
    assert v.decision == "review" and v.hits[0].list.endswith("~mention")
    assert moderation.screen("你就是个傻逼").decision == "reject"


def test_disguise_is_deterministic_and_covers_every_style() -> None:
    texts = ["你就是个傻逼吧", "今天天气很好"]
    a, b = disguise_all(texts, ["傻逼"]), disguise_all(texts, ["傻逼"])
    assert a == b and set(a) == set(STYLES)
    assert a["full_pinyin"][0] == "你就是个shabi吧" and a["initials"][0] == "你就是个sb吧"
    assert a["spaced_pinyin"][0] == "你就是个sha bi吧"
    assert all(copies[1] == texts[1] for style, copies in a.items() if style != "whole_text_pinyin")
    assert keyword_spans("傻逼傻逼", ["傻逼"]) == [(0, 2), (2, 4)]
    assert disguise("你好", "whole_text_pinyin") == "nihao"


def test_every_disguise_style_of_a_core_insult_is_caught() -> None:
    text = "你就是个傻逼吧"
    for style in STYLES:
        if style == "whole_text_pinyin":
            continue
        d = disguise(text, style, keyword_spans(text, ["傻逼"]))
        assert moderation.screen(d).decision != "pass", (style, d)


def test_spelling_hits_map_back_through_normalisation() -> None:
    lex = Lexicon([Entry("傻逼", "abuse", "block", "core")], list_name="core")
    text = "Ｓｈａ\u200b逼"
    (h,) = lex.match(normalize(text))
    assert h.text == text[h.start : h.end] == text
