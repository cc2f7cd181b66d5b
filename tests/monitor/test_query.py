"""Rules' keyword queries: AND / OR / NOT, phrases, proximity, normalised matching, one-line errors."""

from __future__ import annotations

import pytest

from core.errors import InvalidInput
from monitor.query import match, parse


@pytest.mark.parametrize(
    ("query", "text", "hit"),
    [
        ("欠薪 讨薪", "工人欠薪，讨薪无门", True),
        ("欠薪 AND 讨薪", "工人欠薪", False),
        ("欠薪 OR 拖欠工资", "某公司拖欠工資三个月", True),  # traditional characters normalised
        ("欠薪", "工人欠.薪无门", True),  # an inserted symbol does not hide the word
        ("欠薪", "工人欠 薪", True),
        ("欠薪 NOT 已解决", "欠薪问题已解决", False),
        ("欠薪 -已解决", "欠薪问题仍未解决", True),
        ('"拖欠 工资" NEAR/5 农民工', "农民工被拖欠工资", True),
        ("欠薪 NEAR/3 工地", "欠薪的事情发生在某工地", False),
        ("欠薪 NEAR/3 工地", "工地上的欠薪", True),  # either order
        ("(加班 | 996) & -自愿", "强制加班", True),
        ("(加班 | 996) -自愿", "自愿加班", False),
        ("ABC", "abc company", True),
    ],
)
def test_queries_match_as_written(query: str, text: str, hit: bool) -> None:
    assert (match(parse(query), text) is not None) is hit


def test_a_match_reports_spans_of_the_original_text() -> None:
    text = "工人欠.薪，讨薪无门"
    m = match(parse("欠薪 讨薪"), text)
    assert m is not None and m.terms == ("欠薪", "讨薪")
    assert [text[a:b] for a, b in m.spans] == ["欠.薪", "讨薪"]


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("", "empty"),
        ("NOT 广告", "must be present"),
        ("(欠薪", "not closed"),
        ("AND", "needs a term"),
        ('"欠薪', "unclosed quote"),
        ("欠薪 NEAR/999 工地", "wider"),
        ("欠薪 )", "unexpected"),
    ],
)
def test_bad_queries_are_refused_with_a_reason(query: str, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        parse(query)
