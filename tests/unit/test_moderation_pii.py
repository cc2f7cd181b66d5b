"""Personal-data detectors: real numbers in many disguises are found, look-alikes are not."""

from __future__ import annotations

from datetime import date

import pytest

from moderation.normalize import normalize
from moderation.pii import detect, id_card_valid, luhn_valid, mobile_valid

_W = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def make_id(first17: str) -> str:
    """A resident ID with the correct ISO 7064 check digit."""
    return first17 + "10X98765432"[sum(int(d) * w for d, w in zip(first17, _W, strict=True)) % 11]


def make_card(prefix: str, length: int = 16) -> str:
    """A card number with a correct Luhn digit."""
    body = prefix.ljust(length - 1, "0")
    for check in "0123456789":
        if luhn_valid(body + check):
            return body + check
    raise AssertionError("unreachable")


GOOD_ID = make_id("11010519491231002")  # ends in X
GOOD_ID2 = make_id("44030419900307123")
CARD = make_card("6222020200112233", 19)


def kinds(text: str) -> list[tuple[str, str]]:
    return [(h.term, h.text) for h in detect(normalize(text), today=date(2026, 1, 1))]


def test_checksums() -> None:
    assert id_card_valid(GOOD_ID) and id_card_valid(GOOD_ID.lower()) and id_card_valid(GOOD_ID2)
    wrong = GOOD_ID2[:-1] + ("1" if GOOD_ID2[-1] != "1" else "2")
    assert not id_card_valid(wrong)
    assert not id_card_valid("99" + GOOD_ID2[2:])  # no such province
    assert not id_card_valid(make_id("11010519490231002"))  # 31 February
    assert not id_card_valid(make_id("11010530001231002"), today=date(2026, 1, 1))  # born in the future
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert mobile_valid("13800138000") and mobile_valid("8613800138000") and not mobile_valid("12800138000")


@pytest.mark.parametrize(
    ("text", "kind", "shown"),
    [
        ("电话13800138000", "mobile", "13800138000"),
        ("电话 138 0013 8000 找我", "mobile", "138 0013 8000"),
        ("电话138-0013-8000", "mobile", "138-0013-8000"),
        ("手机：一三八零零一三八零零零", "mobile", "一三八零零一三八零零零"),
        ("手机：一三八 零零一三 八零零零", "mobile", "一三八 零零一三 八零零零"),
        ("打①③⑧⓪⓪①③⑧⓪⓪⓪", "mobile", "①③⑧⓪⓪①③⑧⓪⓪⓪"),
        ("打１３８００１３８０００", "mobile", "１３８００１３８０００"),
        ("+86 138 0013 8000", "mobile", "+86 138 0013 8000"),
        (f"身份证号{GOOD_ID}", "id_card", GOOD_ID),
        (
            f"身份证 {GOOD_ID2[:6]} {GOOD_ID2[6:14]} {GOOD_ID2[14:]}",
            "id_card",
            f"{GOOD_ID2[:6]} {GOOD_ID2[6:14]} {GOOD_ID2[14:]}",
        ),
        (f"卡号{CARD}", "bank_card", CARD),
        (
            f"卡号 {CARD[:4]} {CARD[4:8]} {CARD[8:12]} {CARD[12:16]} {CARD[16:]}",
            "bank_card",
            f"{CARD[:4]} {CARD[4:8]} {CARD[8:12]} {CARD[12:16]} {CARD[16:]}",
        ),
        ("邮箱 Zhang.San@Example.com 联系", "email", "Zhang.San@Example.com"),
        ("邮箱 ｚｈａｎｇ＠ｅｘａｍｐｌｅ．ｃｏｍ", "email", "ｚｈａｎｇ＠ｅｘａｍｐｌｅ．ｃｏｍ"),
        ("写信给 a.b@x.com 吧", "email", "a.b@x.com"),
        ("加微信 abc_123456 详聊", "wechat", "abc_123456"),
        ("vx：wxid8888", "wechat", "wxid8888"),
        ("扣扣 12345678", "qq", "12345678"),
        ("QQ号：987654321", "qq", "987654321"),
    ],
)
def test_detected_in_disguise(text: str, kind: str, shown: str) -> None:
    assert (kind, shown) in kinds(text)


@pytest.mark.parametrize(
    "text",
    [
        "订单号13800138000已发货",  # order number that looks like a phone
        "快递单号：6222020200112233445",  # tracking number
        f"身份证{GOOD_ID2[:-1]}{'1' if GOOD_ID2[-1] != '1' else '2'}",  # wrong check digit
        "编号110105194912310021",
        "卡号6222020200112233440",  # fails Luhn (unless by chance; checked below)
        "扣款100000元",  # an amount after 扣
        "今年完成产值12800138000元",  # 12... is not a mobile prefix
        "13800138000138",  # too long to be a phone
        "工会会员人数一二三四",
    ],
)
def test_lookalikes_are_not_hits(text: str) -> None:
    if "6222020200112233440" in text:
        assert not luhn_valid("6222020200112233440")
    assert kinds(text) == []


def test_offsets_point_into_original() -> None:
    text = "请联系：一三八 零零一三 八零零零，谢谢"
    (h,) = detect(normalize(text))
    assert text[h.start : h.end] == h.text and h.category == "privacy" and h.source == "pii"
