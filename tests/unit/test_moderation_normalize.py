"""Normaliser: every disguise is undone and every normalised character maps back to the original."""

from __future__ import annotations

import pytest

from moderation.normalize import apply_homophones, normalize, normalize_term, pinyin_view


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ＦＵＣＫ", "fuck"),  # full-width + case
        ("Ⓕⓤc⒦", "fuck"),  # circled and parenthesised letters
        ("𝐟𝐮𝐜𝐤", "fuck"),  # mathematical bold
        ("🅵🆄🅲🅺", "fuck"),  # negative squared letters (NFKC leaves them alone)
        ("發財", "发财"),  # traditional -> simplified (OpenCC t2s)
        ("五.星@红#旗", "五星红旗"),  # symbols inserted between ideographs
        ("五 星 红 旗", "五星红旗"),  # spaces
        ("傻\u200b逼", "傻逼"),  # zero-width space
        ("傻\u2060\ufe0f逼", "傻逼"),  # word joiner + variation selector
        ("fu\u200bck", "fuck"),  # invisible inside a Latin word
        ("傻傻傻逼", "傻逼"),  # repeated ideographs
        ("傻.傻.逼", "傻逼"),  # repeats and separators together
        ("①③⑧", "138"),  # circled digits
        ("❶❸❽", "138"),  # negative circled digits
        ("⑴⑵", "12"),  # parenthesised digits
        ("一三八零零一三八零零零", "13800138000"),  # Chinese numerals inside a digit run
        ("壹叁捌零零壹叁捌零零零", "13800138000"),  # financial numerals
        ("S B", "sb"),  # spaced-out single letters
        ("f.u.c.k", "fuck"),
        ("n m s l", "nmsl"),
    ],
)
def test_disguises_are_undone(text: str, expected: str) -> None:
    assert normalize(text).text == expected


@pytest.mark.parametrize(
    "text",
    [
        "办法，轮到你了",  # CJK sentence punctuation stays a hard boundary
        "你妈妈的手",  # an ordinary doubled word is kept (else it would read 你妈的手)
        "谢谢大家",
        "一个人",  # a lone numeral is a word, not a digit
        "南京市长江大桥",
        "this is bad",  # Latin words are never joined
        "www.qq.com",
        "x @ y",
    ],
)
def test_ordinary_text_is_kept(text: str) -> None:
    assert normalize(text).text == text


def test_every_normalised_char_maps_into_the_original() -> None:
    text = "Ｈｉ，傻\u200b.傻.逼⑽㈱ 發財 一 三 八 零 零 一 三 八 零 零 零!"
    norm = normalize(text)
    for i in range(len(norm.text)):
        a, b = norm.orig_index(i)
        assert 0 <= a < b <= len(text)
    # spans are monotone: a later normalised char never maps before an earlier one
    starts = [norm.orig_index(i)[0] for i in range(len(norm.text))]
    assert starts == sorted(starts)


def test_span_covers_deleted_separators() -> None:
    text = "这是五.星@红#旗啊"
    norm = normalize(text)
    s = norm.text.index("五星红旗")
    a, b = norm.span(s, s + 4)
    assert text[a:b] == "五.星@红#旗"


def test_expansion_maps_to_its_single_source_char() -> None:
    text = "x⑽y"
    norm = normalize(text)
    assert norm.text == "x10y"
    assert norm.orig_index(1) == (1, 2)
    assert norm.orig_index(2) == (1, 2)
    assert norm.span(3, 4) == (2, 3)


def test_identity_fast_path() -> None:
    norm = normalize("plain ascii text")
    assert norm.identity and norm.span(6, 11) == (6, 11)


def test_terms_and_text_meet_in_the_same_form() -> None:
    assert normalize_term("習近平") == normalize("习近平").text
    assert normalize_term(" 法.轮.功 ") == "法轮功"


def test_homophones_same_length() -> None:
    alt = apply_homophones(normalize("你个沙比草泥马").text)
    assert alt == "你个傻逼操你妈"
    assert apply_homophones("今天开会") is None
    assert apply_homophones("jboss 服务器") is None  # a Latin homophone needs word boundaries
    assert apply_homophones("你个jb") == "你个鸡巴"


def test_pinyin_view_only_for_mixed_runs() -> None:
    assert pinyin_view("傻逼") is None
    assert pinyin_view("hello") is None
    view = pinyin_view("你个sha逼")
    assert view is not None
    assert "shabi" in view.text
    start = view.text.index("shabi")
    assert view.source_span(start, start + 5) == (2, 6)  # "sha逼" in the normalised text
    assert view.source_span(start + 1, start + 5) is None  # not at a syllable/Latin-run edge
    nig = view.text.index("nige")
    assert view.source_span(nig, nig + 4) is None  # pure ideographs: left to the homophone table


def test_vector_path_equals_reference_path() -> None:
    import random

    from moderation.normalize import _normalize_str, _normalize_vector

    pieces = [
        "市总工会召开全委会议，传达学习重要讲话精神。",
        "你妈妈的手艺真好，谢谢大家！",
        "五.星@红#旗",
        "傻\u200b逼",
        "傻傻傻逼",
        "發財了",
        "一三八①③⑧0013八000",
        "一 三 八 零 零 一 三 八 零 零 零",
        "妈.妈",
        "妈妈妈的",
        "哈哈哈哈😀😀傻😀逼",
        "ＦＵＣＫ you sha逼",
        "工会 2024年会议 · 第3期",
        "S B f.u.c.k is bad",
        "a.b@x.com ",
        "\n\n",
    ]
    rng = random.Random(7)
    for _ in range(300):
        text = "".join(rng.choice(pieces) for _ in range(40))
        ref, vec = _normalize_str(text), _normalize_vector(text)
        assert vec is not None
        assert vec.text == ref.text
        assert [vec.orig_index(i) for i in range(len(vec.text))] == [ref.orig_index(i) for i in range(len(ref.text))]
    assert _normalize_vector("x⑽" * 300) is None  # expansions go to the reference path


def test_sound_and_pinyin_views_stay_aligned_after_rare_ideographs() -> None:
    from moderation.normalize import sound_key, sound_view

    # 𬱖 (CJK extension E) has a reading in pypinyin; the views must stay aligned after it (a bug the
    # benchmark found in an earlier version).
    text = "麻烦您不要𬱖域黑加歧视。\ns一下畑园女权 sha逼"
    heard = sound_view(text)
    assert heard is not None and len(heard) == len(text)  # one code per character
    key = sound_key("田园女权")
    assert key is not None
    assert heard.index(key) == text.index("畑")
    pv = pinyin_view(text)
    assert pv is not None
    j = pv.text.index("shabi")
    assert pv.source_span(j, j + 5) == (text.index("sha逼"), text.index("sha逼") + 4)
