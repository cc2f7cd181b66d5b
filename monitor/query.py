"""Keyword queries of the monitor's rules: parsed once, matched on the moderation normaliser's text.

Pure (no IO). The language, loosest binding first::

    query  := or
    or     := and ( ("OR" | "|") and )*
    and    := unary ( ["AND" | "&"] unary )*       -- juxtaposition is AND: 欠薪 讨薪 = 欠薪 AND 讨薪
    unary  := ("NOT" | "-") unary | near
    near   := atom ( "NEAR/" N atom )*             -- both within N characters of each other
    atom   := WORD | "a quoted phrase" | "(" query ")"

Operators are case-insensitive English words (Chinese text has no spaces, so a term is a substring, not a
word). ``A NEAR/10 B``: an occurrence of A and one of B with at most 10 characters between them, in either
order. A query must contain at least one positive term (``NOT 广告`` alone would match nearly everything).

Terms and text are normalised by :func:`moderation.normalize.normalize` (full-width, traditional characters,
inserted symbols and spaces between ideographs, case), so ``欠.薪`` and ``欠薪`` and ``欠 薪`` all match the term
欠薪. Matches are reported as spans of the *original* text, for highlighting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from core.errors import InvalidInput
from moderation.normalize import Normalized, normalize, normalize_term

QUERY_MAX = 2000  # characters of a query
TERMS_MAX = 100  # terms in one query
NEAR_MAX = 500  # the widest proximity window


@dataclass(frozen=True)
class Term:
    """A word or a phrase, normalised (what is searched for) and as written (what is shown)."""

    text: str
    raw: str


@dataclass(frozen=True)
class And:
    parts: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    parts: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    part: Node


@dataclass(frozen=True)
class Near:
    left: Node
    right: Node
    within: int


Node = Term | And | Or | Not | Near

_TOKEN = re.compile(r'\s*(?:(?P<lp>\()|(?P<rp>\))|"(?P<phrase>[^"]*)"|(?P<word>[^\s()"]+))')
_NEAR = re.compile(r"(?i)^near/(\d+)$")


@dataclass(frozen=True)
class Match:
    """A query matched: the terms that were found and their spans in the original text."""

    terms: tuple[str, ...]
    spans: tuple[tuple[int, int], ...]


class _Parser:
    def __init__(self, query: str) -> None:
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        query = query.strip()
        while pos < len(query):
            m = _TOKEN.match(query, pos)
            if m is None or m.end() == pos:
                if query[pos:].strip() == "":
                    break
                raise InvalidInput(f"query: unclosed quote at character {pos + 1}")
            pos = m.end()
            kind = m.lastgroup or ""
            value = m.group(kind)
            if kind == "word" and value.startswith("-") and len(value) > 1:  # -自愿 is NOT 自愿
                self.tokens.append(("word", "NOT"))
                value = value[1:]
            self.tokens.append((kind, value))
        self.pos = 0
        self.terms = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def op(self, *names: str) -> bool:
        tok = self.peek()
        if tok and tok[0] == "word" and tok[1].upper() in names:
            self.pos += 1
            return True
        return False

    def parse(self) -> Node:
        if not self.tokens:
            raise InvalidInput("query is empty")
        node = self.or_()
        if self.peek() is not None:
            raise InvalidInput(f"query: unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return node

    def or_(self) -> Node:
        parts = [self.and_()]
        while self.op("OR", "|"):
            parts.append(self.and_())
        return parts[0] if len(parts) == 1 else Or(tuple(parts))

    def and_(self) -> Node:
        parts = [self.unary()]
        while True:
            tok = self.peek()
            if tok is None or tok[0] == "rp" or (tok[0] == "word" and tok[1].upper() in ("OR", "|")):
                break
            self.op("AND", "&")
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def unary(self) -> Node:
        if self.op("NOT", "-"):
            return Not(self.unary())
        return self.near()

    def near(self) -> Node:
        node = self.atom()
        while (tok := self.peek()) is not None and tok[0] == "word" and (m := _NEAR.match(tok[1])):
            self.pos += 1
            within = int(m.group(1))
            if within > NEAR_MAX:
                raise InvalidInput(f"query: NEAR/{within} is wider than NEAR/{NEAR_MAX}")
            node = Near(node, self.atom(), within)
        return node

    def atom(self) -> Node:
        tok = self.peek()
        if tok is None:
            raise InvalidInput("query ends where a term was expected")
        kind, value = tok
        self.pos += 1
        if kind == "lp":
            node = self.or_()
            if self.peek() is None or self.peek()[0] != "rp":  # type: ignore[index]
                raise InvalidInput("query: a parenthesis is not closed")
            self.pos += 1
            return node
        if kind == "rp":
            raise InvalidInput("query: unexpected ')'")
        if kind == "word" and (value.upper() in ("AND", "OR", "NOT", "&", "|") or _NEAR.match(value)):
            raise InvalidInput(f"query: {value!r} needs a term before and after it")
        text = normalize_term(value)
        if not text:
            raise InvalidInput(f"query: term {value!r} is empty once normalised")
        self.terms += 1
        if self.terms > TERMS_MAX:
            raise InvalidInput(f"query has more than {TERMS_MAX} terms")
        return Term(text, value)


def _positive(node: Node) -> bool:
    """Whether the node can match only through some term being present (not merely absent)."""
    if isinstance(node, Term | Near):
        return True
    if isinstance(node, Not):
        return False
    if isinstance(node, And):
        return any(_positive(p) for p in node.parts)
    return all(_positive(p) for p in node.parts)


@lru_cache(maxsize=1024)
def parse(query: str) -> Node:
    """The query's tree; :class:`InvalidInput` with a one-line reason for a query that does not parse."""
    if len(query) > QUERY_MAX:
        raise InvalidInput(f"query is {len(query)} characters; at most {QUERY_MAX}")
    node = _Parser(query).parse()
    if not _positive(node):
        raise InvalidInput("query needs a term that must be present (NOT alone matches nearly everything)")
    return node


def _occurrences(text: str, term: str) -> list[int]:
    found, start = [], text.find(term)
    while start != -1:
        found.append(start)
        start = text.find(term, start + 1)
    return found


def _eval(node: Node, text: str, hits: dict[str, list[int]]) -> list[tuple[int, int, str]] | None:
    """Spans (normalised offsets) that make ``node`` true, or None if it is false. NOT contributes no spans."""
    if isinstance(node, Term):
        if node.text not in hits:
            hits[node.text] = _occurrences(text, node.text)
        positions = hits[node.text]
        return [(p, p + len(node.text), node.raw) for p in positions] if positions else None
    if isinstance(node, And):
        spans: list[tuple[int, int, str]] = []
        for part in node.parts:
            found = _eval(part, text, hits)
            if found is None:
                return None
            spans += found
        return spans
    if isinstance(node, Or):
        spans, any_true = [], False
        for part in node.parts:
            found = _eval(part, text, hits)
            if found is not None:
                any_true = True
                spans += found
        return spans if any_true else None
    if isinstance(node, Not):
        return None if _eval(node.part, text, hits) is not None else []
    left, right = _eval(node.left, text, hits), _eval(node.right, text, hits)
    if not left or not right:
        return None
    # the characters between the two occurrences (negative when they overlap), in either order
    close = [pair for a in left for b in right if max(a[0], b[0]) - min(a[1], b[1]) <= node.within for pair in (a, b)]
    return close or None


def match(node: Node, text: str | Normalized) -> Match | None:
    """Match a parsed query against a text (or its :class:`Normalized` form); None if it does not match."""
    norm = text if isinstance(text, Normalized) else normalize(text)
    found = _eval(node, norm.text, {})
    if found is None:
        return None
    unique = sorted(set(found))[:50]
    spans = norm.spans([s for s, _e, _t in unique], [e for _s, e, _t in unique]) if unique else []
    terms = tuple(dict.fromkeys(t for _s, _e, t in unique))
    return Match(terms=terms, spans=tuple(sorted(set(spans))))
