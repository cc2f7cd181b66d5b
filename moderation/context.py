"""Mention, not use: does the text quote or condemn an insult rather than hurl it? Pure, no IO.

The largest error on unseen offensive-language data is anti-bias text — texts that quote, discuss or condemn
an insult (labelled harmless). A lexicon hit in such a frame is a weaker signal than the same word used, so
the lexicon reports it as ``<list>~mention`` with review severity (a person decides; it never rejects alone).

A hit is a *mention* when, on its own line:

* it is wrapped in quotation marks or title brackets right at its edges (“傻逼”, 「婊子」, "sb", 《…》), or
* a meta word about words comes shortly before it (骂人, 脏话, 这个词, 称呼, 不要说 …), or right after it
  (这个词, 这种说法, 是脏话 …).

Deliberately narrow. Words about discrimination (歧视, 侮辱) were tried as frames and dropped: on COLD *train*
the rows they softened were labelled harmless *less* often than rejected rows in general ("我就是歧视…" uses
the insult). The README gives the rule's measured selectivity on COLD train.
"""

from __future__ import annotations

import re

__all__ = ["is_mention"]

_OPEN = "“‘「『\"'《【"
_CLOSE = "”’」』\"'》】"
# Before the hit (within _BEFORE characters on the same line).
_META_BEFORE_RE = re.compile(
    r"(骂人|骂别人|称呼|被叫|被骂|脏话|这个词|这种词|这类词|字眼|词语|不要说|别说|不该说|不能说|禁止说)"
)
# Right after the hit.
_META_AFTER_RE = re.compile(r"^.{0,2}(这个词|这种词|这个称呼|这种称呼|这种说法|这个说法|是脏话|是骂人|是歧视|是侮辱)")
_BEFORE = 12
_AFTER = 8


def is_mention(text: str, start: int, end: int) -> bool:
    """True if ``text[start:end]`` is quoted, or framed by a meta word about words or discrimination."""
    if start > 0 and end < len(text) and text[start - 1] in _OPEN and text[end] in _CLOSE:
        return True
    line_start = text.rfind("\n", 0, start) + 1
    before = text[max(line_start, start - _BEFORE) : start]
    if _META_BEFORE_RE.search(before):
        return True
    line_end = text.find("\n", end)
    after = text[end : min(end + _AFTER, line_end if line_end >= 0 else len(text))]
    return bool(_META_AFTER_RE.match(after))
