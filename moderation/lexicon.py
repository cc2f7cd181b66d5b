"""Lexicon matching: Aho–Corasick over the normalised text, its homophone view and its pinyin view.

The :class:`Lexicon` is compiled once from entries (pure: no IO); :func:`load_builtin` is the one place that
reads the shipped files in ``moderation/data/lexicons/``. Organisation lists compile into their own small
:class:`Lexicon` (see :class:`OrgLists`), so a new list version never rebuilds the 47k-term default.

How a hit is found and reported:

1. every term is normalised with :func:`moderation.normalize.normalize_term`, the same function the text goes
   through, so ``習近平``/``五.星`` variants of a term collapse to one pattern;
2. the automaton runs over the normalised text (only the windows a cheap pre-check, :class:`_Gate`, leaves);
   a term that starts/ends with a Latin letter or digit must not touch another letter/digit there (``sb`` must
   not fire inside ``usb``);
3. if a homophone from :data:`moderation.normalize.HOMOPHONES` occurs, the automaton also runs over the
   canonical spelling (same length, same offsets);
4. if the text mixes ideographs and Latin letters, a second automaton over the terms' pinyin runs over the
   pinyin view (``sha逼`` → ``shabi``); a match must start and end on syllable edges and contain a letter that
   was really typed as a letter;
5. hits inside an allow-list entry (default + organisation) are dropped, and a hit contained in a longer hit of
   the same category is folded into it;
6. normalised spans are mapped back, so ``Hit.text == original[start:end]``.

Aho–Corasick backend: ``pyahocorasick`` or ``ahocorasick_rs`` (``backend=``); ``bench/moderation.py`` measures
both and the default is the faster one there (``ahocorasick_rs``), with ``pyahocorasick`` as the fallback.

The per-character loops around the automata (the pre-check gates, the compaction of their windows) run in C
where the optional extension ``moderation/_lexfast.c`` was built (:mod:`moderation.fastpath`), with numpy
otherwise; both give the same rows (tests/unit/test_moderation_compiled.py). A batch has a handful of spans,
so the steps after the automata (allow-list windows, folding, deduplication) use lists below _SMALL_SPANS.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import itertools
import logging
import mmap
import os
import pickle
import re
import struct
import sys
import tempfile
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import NamedTuple, Protocol

import numpy as np

from moderation import fastpath
from moderation.config import DEFAULT_CACHE_DIR
from moderation.context import is_mention
from moderation.memory import return_freed_memory
from moderation.normalize import (
    Normalized,
    apply_homophones,
    forget_tables,
    homophone_keys,
    homophone_spans,
    is_pinyin_word,
    normalize_term,
    pinyin_view,
    prime_tables,
    sound_key,
    sound_table,
    sound_view,
    table_state,
    term_pinyin,
)
from moderation.policy import GROUP_SUFFIX, MENTION_SUFFIX
from moderation.spelling import pinyin_spellings
from moderation.types import CATEGORIES, SEVERITIES, Hit, LexiconError

__all__ = [
    "DATA_DIR",
    "Entry",
    "Lexicon",
    "OrgLists",
    "load_allow",
    "load_builtin",
    "read_tsv",
]

DATA_DIR = Path(__file__).parent / "data" / "lexicons"
log = logging.getLogger(__name__)


def _default_backend() -> str:
    # ahocorasick_rs: even behind the pre-checks (:class:`_Gate`), where the automaton reads ~7 % of the text,
    # it is ~9x faster than pyahocorasick there (whose trie scans a node's children linearly: the root has
    # thousands). pyahocorasick stays as the fallback where the Rust wheel is not installed; its automata are
    # the ones the lexicon cache can store (ahocorasick_rs ones are rebuilt on load, ~0.3-0.8 s for the default).
    try:
        import ahocorasick_rs  # noqa: F401
    except ImportError:
        return "pyahocorasick"
    return "ahocorasick_rs"


DEFAULT_BACKEND = _default_backend()

_ALNUM = re.compile(r"[a-z0-9]")
_CJK = re.compile(r"[\u3400-\u9fff]")
# Pinyin-path terms: categories where writing a word in pinyin is a known evasion. Ads are left out (domain
# names and brand spellings would collide with ordinary Latin text).
_PINYIN_CATEGORIES = frozenset({"abuse", "porn", "politics", "gambling", "violence", "fraud", "custom"})
# Latin-only full-pinyin variants (``shabi``) are added for these categories when at least this long.
_LATIN_PINYIN_CATEGORIES = frozenset({"abuse", "porn"})
# Hand-curated core terms from 5 letters (shabi); list terms only from 8, because short pinyin strings are
# also names and words in Latin text (suyang, junai, piyan all come from porn terms of the raw lists).
_LATIN_PINYIN_MIN = 5
_LATIN_PINYIN_MIN_LISTS = 8
# Generated spellings of short terms (moderation.spelling: sha逼, 傻b, s逼, sha bi, shab, cnm). Which kinds a
# term gets, by how often each kind was seen to fire on harmless text (COLD/SWSR train rows, English prose;
# tests/unit/test_moderation_disguise.py guards the rates):
# * abuse terms of every list: ``mixed`` (an ideograph touching a letter is rare in ordinary text) and ``full``
#   from _VARIANT_FULL_MIN letters (lists) or _LATIN_PINYIN_MIN (core), at the term's severity;
# * core abuse terms also ``partial`` (from 4 letters) and ``initials`` (from 3 letters), as review: codes
#   such as ``sqj`` for 死全家 are real disguises but also occur as abbreviations;
# * core terms of the other pinyin categories: ``mixed`` only.
_VARIANT_FULL_MIN = 6
_VARIANT_PARTIAL_MIN = 4
_VARIANT_INITIALS_MIN = 3


@dataclass(frozen=True, slots=True)
class Entry:
    """One lexicon term as stored (``term`` as written, not yet normalised)."""

    term: str
    category: str
    severity: str = "review"
    source: str = ""


class _Matcher(Protocol):
    def find(self, text: str) -> Iterable[tuple[int, int, int]]:
        """``(pattern_index, start, end)`` for every (overlapping) occurrence."""
        ...


class _PyAhoCorasick:
    """pyahocorasick (C): ``iter`` yields the inclusive end index and the stored value (the pattern index)."""

    picklable = True  # the automaton itself is stored in the lexicon cache

    def __init__(self, patterns: Sequence[str]) -> None:
        import ahocorasick

        self._auto = ahocorasick.Automaton(ahocorasick.STORE_INTS)
        for i, p in enumerate(patterns):
            self._auto.add_word(p, i)
        self._lengths = np.array([len(p) for p in patterns] or [0], dtype=np.int64)
        self._empty = not patterns
        if not self._empty:
            self._auto.make_automaton()

    def find(self, text: str) -> np.ndarray:
        if self._empty:
            return _EMPTY
        # (end, index) pairs straight into an array; starts computed from the pattern lengths in one step.
        found = np.array(list(self._auto.iter(text)), dtype=np.int64).reshape(-1, 2)
        idx, end = found[:, 1], found[:, 0] + 1
        return np.column_stack((idx, end - self._lengths[idx], end))


class _RustAhoCorasick:
    """ahocorasick_rs (Rust, via PyO3): returns a list of ``(index, start, end)`` in character offsets."""

    def __init__(self, patterns: Sequence[str]) -> None:
        import ahocorasick_rs

        # The contiguous NFA, chosen explicitly: it builds as fast as the default choice for the 73k-pattern
        # list and searched the match-dense windows the pre-checks leave ~2.5x faster (measured here).
        self._ac = (
            ahocorasick_rs.AhoCorasick(
                list(patterns),
                matchkind=ahocorasick_rs.MATCHKIND_STANDARD,
                implementation=ahocorasick_rs.Implementation.ContiguousNFA,
            )
            if patterns
            else None
        )

    def find(self, text: str) -> list[tuple[int, int, int]]:
        if self._ac is None:
            return []
        return self._ac.find_matches_as_indexes(text, overlapping=True)


BACKENDS: dict[str, type] = {"pyahocorasick": _PyAhoCorasick, "ahocorasick_rs": _RustAhoCorasick}


def _matcher(patterns: Sequence[str], backend: str) -> _Matcher:
    try:
        cls = BACKENDS[backend]
    except KeyError as exc:
        raise LexiconError(f"unknown Aho-Corasick backend {backend!r}; choose from {sorted(BACKENDS)}") from exc
    return cls(patterns)


# Characters so common that, kept beside initials only (r你, mm的), they do not make a mixed spelling unusual.
_COMMON_CHARS = frozenset("的了是不我你他她它们在有这那个就也都和人大小一上中子么吗呢啊吧")


def _weak_mixed(text: str, term_chars: int) -> bool:
    """True for a mixed spelling whose Latin pieces are single initials and whose ideographs are all very
    common (``r你`` for 日你, ``mm的`` for 毛妈的): such strings occur in ordinary text (``黑人mm的``)."""
    cjk = [c for c in text if _CJK.match(c)]
    letters = sum(1 for c in text if "a" <= c <= "z")
    return letters == term_chars - len(cjk) and all(c in _COMMON_CHARS for c in cjk)


class _Pattern(NamedTuple):
    """What a pattern reports (a named tuple: 70k of them unpickle from the cache ten times faster than
    dataclass instances)."""

    term: str  # as written in the list (shown to reviewers)
    category: str
    severity: str
    list: str
    left_alnum: bool  # normalised pattern starts with a Latin letter/digit → needs a boundary before it
    right_alnum: bool


class _PatternTable(Sequence[_Pattern]):
    """The patterns as columns: a :class:`_Pattern` is made only for a hit (``table[i]``).

    A list of 70k named tuples costs ~18 MB of Python objects in every process (a tuple, and per row its own
    copies of the category, severity and list strings as the cache unpickles them); as columns it is ~1 MB:
    the distinct terms joined into one string with their offsets, and one small code per row for the term,
    category, severity and list. Pickled, the columns are numpy arrays, which the lexicon cache keeps as file
    pages (:func:`_read_cache`).
    """

    __slots__ = ("_cat", "_ends", "_left", "_list", "_lists", "_right", "_sev", "_terms", "_text")

    def __init__(self, patterns: Sequence[_Pattern]) -> None:
        term_ids: dict[str, int] = {}
        lists: dict[str, int] = {}
        for p in patterns:
            term_ids.setdefault(p.term, len(term_ids))
            lists.setdefault(p.list, len(lists))
        self._text = "".join(term_ids)
        self._ends = np.cumsum([0, *map(len, term_ids)], dtype=np.int64)
        self._terms = np.array([term_ids[p.term] for p in patterns], dtype=np.int32)
        self._cat = np.array([CATEGORIES.index(p.category) for p in patterns], dtype=np.uint8)
        self._sev = np.array([SEVERITIES.index(p.severity) for p in patterns], dtype=np.uint8)
        self._lists = tuple(lists)
        self._list = np.array([lists[p.list] for p in patterns], dtype=np.uint16)
        self._left = np.array([p.left_alnum for p in patterns], dtype=bool)
        self._right = np.array([p.right_alnum for p in patterns], dtype=bool)

    def __len__(self) -> int:
        return len(self._terms)

    def __getitem__(self, i):  # type: ignore[no-untyped-def]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        # ndarray.item: a Python scalar straight away (int(a[i]) makes a numpy scalar first: slower, per hit)
        t = self._terms.item(i)
        return _Pattern(
            self._text[self._ends.item(t) : self._ends.item(t + 1)], CATEGORIES[self._cat.item(i)],
            SEVERITIES[self._sev.item(i)], self._lists[self._list.item(i)], self._left.item(i), self._right.item(i),
        )  # fmt: skip

    def __getstate__(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self.__slots__}

    def __setstate__(self, state: dict[str, object]) -> None:
        for k, v in state.items():
            setattr(self, k, v)


class _BigramSet:
    """A set of two-character strings as one sorted ``uint64`` key per entry, for ``text[i:i + 2] in common``.

    A ``frozenset`` of the 33k common bigrams costs ~4.4 MB of Python objects; as keys it is 256 KB (file pages
    when read from the lexicon cache). Only entries of exactly two characters are kept: a membership test of
    any other string is ``False``, as it would have been for the slices of two characters that are tested.
    """

    __slots__ = ("_keys", "_view")

    def __init__(self, words: Iterable[str]) -> None:
        self._keys = np.unique(np.array([self._key(w) for w in words if len(w) == 2], dtype=np.uint64))
        self._view: memoryview | None = None

    @staticmethod
    def _key(word: str) -> int:
        return (ord(word[0]) << 21) | ord(word[1])

    def __contains__(self, word: object) -> bool:
        if not isinstance(word, str) or len(word) != 2:
            return False
        # bisect over a memoryview of the keys: Python ints, no numpy scalar per probe (searchsorted on one value
        # cost ~20 us a test, and a text with sound-alike hits tests two per hit)
        if self._view is None:
            self._view = memoryview(self._keys).cast("B").cast("Q")
        key = self._key(word)
        i = bisect.bisect_left(self._view, key)
        return i < len(self._view) and self._view[i] == key

    def __len__(self) -> int:
        return len(self._keys)

    def __getstate__(self) -> dict[str, object]:
        return {"_keys": self._keys}

    def __setstate__(self, state: dict[str, object]) -> None:
        self._keys = state["_keys"]
        self._view = None


class Lexicon:
    """A compiled deny-list plus allow-list. Thread-safe for matching once built (read-only)."""

    def __init__(
        self,
        entries: Iterable[Entry],
        allow: Iterable[str] = (),
        *,
        list_name: str = "default",
        version: str = "",
        backend: str = DEFAULT_BACKEND,
        pinyin: bool = True,
        sound: Iterable[str] = (),
        common_bigrams: Iterable[str] = (),
        group_words: Iterable[str] = (),
    ) -> None:
        """``sound`` lists terms (already in ``entries``) that are also matched by sound, as review;
        ``common_bigrams`` are ordinary two-character words that veto a sound-alike match at its edges;
        ``group_words`` are terms that only name a group of people (河南人, 穆斯林): their hits are marked
        ``~group`` (review severity) and the policy lets them pass alone (``Policy.group_action``)."""
        self.version = version
        self.list_name = list_name
        self.backend = backend
        patterns: dict[str, int] = {}
        self._patterns: list[_Pattern] = []
        pattern_texts: list[str] = []
        pinyin_texts: dict[str, int] = {}
        for n, e in enumerate(entries, 1):
            if e.category not in CATEGORIES:
                raise LexiconError(f"{list_name}: entry {n} {e.term!r}: unknown category {e.category!r}")
            if e.severity not in SEVERITIES:
                raise LexiconError(f"{list_name}: entry {n} {e.term!r}: unknown severity {e.severity!r}")
            norm = normalize_term(e.term)
            if not norm or norm in patterns:
                continue  # first entry wins (lists are read in priority order)
            if _LINE_BREAK in norm:
                # No match may cross a line break: screen_batch joins texts with one, and _find_in_runs joins
                # the windows it searches with one, so such a term would match across two texts or two
                # unrelated places of one text (an organisation's list may hold anything an admin typed).
                log.warning("%s: entry %d %r spans a line break and is left out", list_name, n, e.term)
                continue
            patterns[norm] = len(self._patterns)
            pattern_texts.append(norm)
            pat = _Pattern(
                e.term, e.category, e.severity, e.source or list_name,
                bool(_ALNUM.match(norm[0])), bool(_ALNUM.match(norm[-1])),
            )  # fmt: skip
            self._patterns.append(pat)
            if pinyin and e.category in _PINYIN_CATEGORIES and _CJK.search(norm) and len(norm) >= 2:
                py = term_pinyin(norm)
                if py and len(py) >= 4:
                    old = pinyin_texts.get(py)
                    # One pattern per pinyin string: the hand-curated core spelling wins (it is the one a
                    # reviewer should see, and the one allowed a short Latin-only variant).
                    if old is None or (pat.list == "core" and self._patterns[old].list != "core"):
                        pinyin_texts[py] = patterns[norm]
        if pinyin:
            self._add_spellings(patterns, pattern_texts)
        # Latin-only pinyin variants ("shabi") live in the main automaton with the same boundary rule.
        for py, idx in list(pinyin_texts.items()):
            pat = self._patterns[idx]
            shortest = _LATIN_PINYIN_MIN if pat.list == "core" else _LATIN_PINYIN_MIN_LISTS
            if pat.category in _LATIN_PINYIN_CATEGORIES and len(py) >= shortest and py not in patterns:
                patterns[py] = len(self._patterns)
                pattern_texts.append(py)
                self._patterns.append(_Pattern(pat.term, pat.category, pat.severity, pat.list, True, True))
        self._pattern_texts = pattern_texts
        self._left_alnum = np.array([p.left_alnum for p in self._patterns] or [False], dtype=bool)
        self._right_alnum = np.array([p.right_alnum for p in self._patterns] or [False], dtype=bool)
        self._cat_code = np.array([CATEGORIES.index(p.category) for p in self._patterns] or [0], dtype=np.int64)
        # Compiled: from here on the patterns are only read, one per hit (see _PatternTable).
        self._patterns = _PatternTable(self._patterns)  # type: ignore[assignment]
        self._main = _matcher(pattern_texts, backend)
        self._pinyin_keys = list(pinyin_texts)
        self._pinyin_idx = np.array([pinyin_texts[k] for k in self._pinyin_keys], dtype=np.int64)
        self._pinyin = _matcher(self._pinyin_keys, backend) if self._pinyin_keys else None
        sound_texts: dict[str, int] = {}
        for term in sound:
            norm = normalize_term(term)
            key = sound_key(norm) if norm in patterns else None
            if key:
                sound_texts.setdefault(key, patterns[norm])
        self._sound_keys = list(sound_texts)
        self._sound_idx = [sound_texts[k] for k in self._sound_keys]
        self._sound = _matcher(self._sound_keys, backend) if self._sound_keys else None
        self._common_bigrams = _BigramSet(common_bigrams)
        self._group = frozenset(g for g in (normalize_term(t) for t in group_words) if g)
        self._group_idx = frozenset(i for i, p in enumerate(self._pattern_texts) if p in self._group)
        # An allow entry spanning a line break would cover hits across texts or windows, as above.
        allow_norm = sorted({a for a in (normalize_term(t) for t in allow) if a and _LINE_BREAK not in a})
        self._allow = _matcher(allow_norm, backend) if allow_norm else None
        self._allow_texts = allow_norm
        self._build_gates()

    def _add_spellings(self, patterns: dict[str, int], pattern_texts: list[str]) -> None:
        """Add the generated pinyin spellings of short terms (see the rules at _VARIANT_FULL_MIN) to the main
        automaton, each pointing at a copy of its term's pattern (same term shown, same category)."""
        # Core terms first: when two terms share a spelling (煞笔 and 傻逼 both read shabi), the hand-curated one
        # is what the reviewer sees.
        order = sorted(range(len(self._patterns)), key=lambda i: self._patterns[i].list != "core")
        for idx in order:
            pat = self._patterns[idx]
            core = pat.list == "core"
            if pat.category != "abuse" and not (core and pat.category in _PINYIN_CATEGORIES):
                continue
            norm = pattern_texts[idx]
            for text, kind in pinyin_spellings(norm):
                letters = sum(1 for c in text if "a" <= c <= "z")
                severity = pat.severity
                if kind == "mixed":
                    if not core and _weak_mixed(text, len(norm)):
                        continue
                elif pat.category != "abuse":
                    continue
                elif kind == "full":
                    if letters < (_LATIN_PINYIN_MIN if core else _VARIANT_FULL_MIN):
                        continue
                elif not core:
                    continue
                elif (kind == "partial" and letters < _VARIANT_PARTIAL_MIN) or (
                    kind == "initials" and letters < _VARIANT_INITIALS_MIN
                ):
                    continue
                elif is_pinyin_word(text.replace(" ", "")):
                    continue  # s + huo reads "shuo" (说): a code that is itself pinyin is ordinary text
                else:
                    severity = "review"  # short Latin codes: a person decides
                if text in patterns:
                    continue  # an explicit list term (or an earlier spelling) wins
                patterns[text] = len(self._patterns)
                pattern_texts.append(text)
                self._patterns.append(
                    _Pattern(
                        pat.term, pat.category, severity, pat.list,
                        bool(_ALNUM.match(text[0])), bool(_ALNUM.match(text[-1])),
                    )
                )  # fmt: skip

    def __len__(self) -> int:
        return len(self._pattern_texts)

    # pyahocorasick automata pickle (and load ~3x faster than they build); ahocorasick_rs ones do not and
    # are rebuilt from their pattern lists on load (the lists themselves take most of a compile to derive).
    _AUTOMATA = ("_main", "_pinyin", "_sound", "_sound_dense", "_allow")

    def __getstate__(self) -> dict[str, object]:
        return {
            k: v
            for k, v in self.__dict__.items()
            if k not in self._AUTOMATA or v is None or getattr(v, "picklable", False)
        }

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        sources = {
            "_main": self._pattern_texts, "_pinyin": self._pinyin_keys, "_sound": self._sound_keys,
            "_sound_dense": self._sound_dense_keys, "_allow": self._allow_texts,
        }  # fmt: skip
        for name, patterns in sources.items():
            if name not in state:
                setattr(self, name, _matcher(patterns, self.backend) if (patterns or name == "_main") else None)

    def _build_gates(self) -> None:
        """The pre-checks of the main, homophone and sound automata (see :class:`_Gate`), and one lookup table
        giving every character its main code (low 16 bits) and sound code (high 16 bits)."""
        hom = homophone_keys()
        chars = sorted({ch for p in self._pattern_texts for ch in p} | {ch for h in hom for ch in h})
        if len(chars) >= 0xFFFF:
            raise LexiconError(f"{self.list_name}: {len(chars)} distinct characters, at most 65534 supported")
        code = {ch: i + 1 for i, ch in enumerate(chars)}
        lut = np.zeros(0x110000, dtype=np.uint32)
        lut[[ord(ch) for ch in chars]] = np.arange(1, len(chars) + 1)
        self._gate = _Gate(len(chars) + 1, [[code[ch] for ch in p] for p in self._pattern_texts])
        self._hom_gate = _Gate(len(chars) + 1, [[code[ch] for ch in h] for h in hom])
        self._sound_gate: _Gate | None = None
        self._sound_dense: _Matcher | None = None
        self._sound_dense_keys: list[str] = []
        if self._sound_keys:
            # Sound keys over dense syllable codes; a character maps straight to its syllable's code (0 when
            # no key uses that syllable), so the sound view is never built for the whole text.
            used = sorted({ch for key in self._sound_keys for ch in key})
            dense = np.zeros(0x110000, dtype=np.uint32)
            dense[[ord(ch) for ch in used]] = np.arange(1, len(used) + 1)
            composite = np.take(dense, sound_table())
            composite[0] = 0
            lut |= composite << np.uint32(16)
            scode = {ch: i + 1 for i, ch in enumerate(used)}
            self._sound_gate = _Gate(len(used) + 1, [[scode[ch] for ch in key] for key in self._sound_keys])
            self._sound_dense_keys = ["".join(chr(_SOUND_BASE + scode[ch]) for ch in key) for key in self._sound_keys]
            self._sound_dense = _matcher(self._sound_dense_keys, self.backend)
        self._lut = lut
        self._allow_longest = max((len(a) for a in self._allow_texts), default=0)

    # -- matching ------------------------------------------------------------------------------------------
    def raw_spans(self, norm: Normalized, *, exhaustive: bool = False) -> np.ndarray:
        """``(pattern_index, start, end, by_sound)`` rows in normalised coordinates, before allow-list and folding.

        Vectorised: a dense lexicon finds a match every dozen characters, so per-match Python would dominate.
        ``by_sound`` is 1 for a sound-alike match (沙币 for 傻逼) that is not also a spelled match.
        The automata read only the windows their pre-checks (:class:`_Gate`) leave; ``exhaustive=True`` runs
        them over the whole text instead (the reference the tests compare against: same rows).
        """
        text = norm.text
        n = len(text)
        cps = norm.code_points()
        sound_runs = None
        if exhaustive:
            found = [self._boundary_ok(_as_array(self._main.find(text)), cps)]
            changed = homophone_spans(text)
        elif (lib := fastpath.compiled()) is not None:
            # The same gates, all three in one pass of the C loop over the code points (no full-length arrays).
            codes = None
            specs = [self._gate.spec(0, sparse=False, windows=True), self._hom_gate.spec(0, sparse=True, windows=False)]
            if self._sound_gate is not None:
                specs.append(self._sound_gate.spec(16, sparse=True, windows=True))
            gated = _compiled_gates(lib, cps, self._lut, specs)
            found = [self._boundary_ok(_find_in_runs(self._main, cps, gated[0]), cps)]
            cand = gated[1][0]
            changed = homophone_spans(text, cand.tolist()) if len(cand) else []
            sound_runs = gated[2] if len(gated) > 2 else None
        else:
            codes = np.take(self._lut, cps)
            c, y = self._gate.bigrams(codes, 0xFFFF)
            found = [self._boundary_ok(_find_in_runs(self._main, cps, self._gate.windows(c, y)), cps)]
            cand, _ = self._hom_gate.sparse_candidates(c[:n])
            changed = homophone_spans(text, cand.tolist()) if len(cand) else []
        if changed:
            alt = apply_homophones(text, changed) or text
            alt_cps = np.frombuffer(alt.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
            # Only windows around the replaced spellings need a second look; a match must overlap one of them.
            hs = np.array([h[0] for h in changed], dtype=np.int64)
            he = np.array([h[1] for h in changed], dtype=np.int64)
            for cs, ce in _merge_windows(changed, n, _HOMOPHONE_WINDOW):
                m = _as_array(self._main.find(alt[cs:ce]))
                m[:, 1:] += cs
                m = self._boundary_ok(m, alt_cps)
                # The spellings are sorted and disjoint, so both their starts and ends ascend: a match [a, b)
                # overlaps one iff the first spelling ending after a starts before b. One binary search per
                # match, where comparing every match with every spelling was quadratic on a text made of them
                # (80k characters of 草泥马 took 9 s: one merged window, 27k matches x 27k spellings).
                k = np.searchsorted(he, m[:, 1], side="right")
                kc = np.minimum(k, len(hs) - 1)
                found.append(m[(k < len(hs)) & (hs[kc] < m[:, 2])])
        if self._pinyin is not None:
            view = pinyin_view(text, cps)
            if view is not None:
                m = _as_array(self._pinyin.find(view.text))
                if len(m):
                    ok, a, b = view.source_spans(m[:, 1], m[:, 2])
                    found.append(np.column_stack((self._pinyin_idx[m[ok, 0]], a[ok], b[ok])))
        found = [f for f in found if len(f)] or found[:1]
        # Rows from several views: sorted and deduplicated (one list alone has neither ties nor duplicates).
        spelled = _unique_rows(np.concatenate(found)) if len(found) > 1 else found[0]
        out = np.column_stack((spelled, np.zeros(len(spelled), dtype=np.int64)))
        heard_rows = self._sound_matches(text, cps, None if exhaustive else codes, not exhaustive, sound_runs)
        if len(heard_rows):
            rows = []
            common = self._common_bigrams
            for k, a, b in heard_rows.tolist():
                # 啥比较 is 啥 + 比较, not 傻逼: an edge character that forms a common word with its
                # neighbour outside the match means the sound-alike is an accident of an ordinary word.
                if (a > 0 and text[a - 1 : a + 1] in common) or (b < n and text[b - 1 : b + 1] in common):
                    continue
                rows.append((self._sound_idx[k], a, b))
            if rows:
                heard = _as_array(rows)
                known = {tuple(r) for r in spelled.tolist()}
                heard = np.array([r for r in heard.tolist() if tuple(r) not in known], dtype=np.int64)
                if len(heard):
                    flags = np.ones(len(heard), dtype=np.int64)
                    out = np.concatenate((out, np.column_stack((heard.reshape(-1, 3), flags))))
        return out

    def _sound_matches(
        self,
        text: str,
        cps: np.ndarray,
        sound_codes: np.ndarray | None,
        gated: bool = True,
        runs: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> np.ndarray:
        """``(sound key index, start, end)`` of every sound-alike match. ``gated``: only the windows the sound
        gate leaves are searched — ``runs`` when the caller has them (the compiled gates), else computed from
        ``sound_codes`` (the lexicon's lookup of each character: its dense syllable code in the high 16 bits)
        or, without those, from the code points; not ``gated``: the whole sound view is searched."""
        if self._sound is None:
            return _EMPTY
        if not gated:
            heard_text = sound_view(text)
            return _EMPTY if heard_text is None else _as_array(self._sound.find(heard_text))
        gate, dense = self._sound_gate, self._sound_dense
        if gate is None or dense is None:  # never: both are built together with self._sound
            return _EMPTY
        if runs is not None:
            return _find_in_runs(dense, cps, runs, shift=16, base=_SOUND_BASE, lut=self._lut)
        if sound_codes is None:
            sound_codes = np.take(self._lut, cps)
        # The high halves of the lookup, read in place where the machine is little-endian.
        high = sound_codes.view(np.uint16)[1::2] if sys.byteorder == "little" else sound_codes >> np.uint32(16)
        pos, longest = gate.sparse_candidates(high)
        if not len(pos):
            return _EMPTY
        runs = _merge_runs(pos, np.minimum(pos + longest, len(cps)))
        # Distinct keys are distinct syllable strings, so no two share a span: the order of rows is irrelevant.
        return _find_in_runs(dense, sound_codes, runs, shift=16, base=_SOUND_BASE)

    def _boundary_ok(self, m: np.ndarray, cps: np.ndarray) -> np.ndarray:
        """Drop matches of Latin/digit-edged terms that touch another Latin letter or digit (sb in usb)."""
        if not len(m):
            return m
        idx, s, e = m[:, 0], m[:, 1], m[:, 2]
        left, right = self._left_alnum[idx], self._right_alnum[idx]
        if not (left.any() or right.any()):
            return m
        n = len(cps)
        before = cps[np.maximum(s - 1, 0)]
        after = cps[np.minimum(e, n - 1)]
        alnum_before = (s > 0) & (((before >= 97) & (before <= 122)) | ((before >= 48) & (before <= 57)))
        alnum_after = (e < n) & (((after >= 97) & (after <= 122)) | ((after >= 48) & (after <= 57)))
        return m[~((left & alnum_before) | (right & alnum_after))]

    def allow_spans(self, norm_text: str) -> list[tuple[int, int]]:
        """Normalised spans covered by this lexicon's allow-list."""
        if self._allow is None:
            return []
        return [(s, e) for _, s, e in _as_array(self._allow.find(norm_text)).tolist()]

    def match(self, norm: Normalized, extra_allow: Sequence[tuple[int, int]] = ()) -> list[Hit]:
        """Hits in original coordinates, allow-listed ones removed, contained duplicates folded."""
        spans = self.raw_spans(norm)
        if not len(spans):
            return []
        allow = [*self._allow_near(norm, spans), *extra_allow]
        return self.to_hits(norm, spans, allow)

    def _allow_near(self, norm: Normalized, spans: np.ndarray) -> list[tuple[int, int]]:
        """The allow-list spans that can cover one of ``spans``: an entry covering ``[s, e)`` lies inside
        ``[e - longest, s + longest)``, so only those windows are searched (same suppression as the whole text)."""
        if self._allow is None:
            return []
        n, reach = len(norm.text), self._allow_longest
        s, e = spans[:, 1], spans[:, 2]
        coverable = e - s <= reach  # a hit longer than every entry cannot be covered
        lo, hi = np.maximum(e - reach, 0)[coverable], np.minimum(s + reach, n)[coverable]
        if not len(lo):
            return []
        if len(lo) <= _SMALL_SPANS:
            # A few windows: searched as slices of the text, which is what _find_in_runs computes, minus its
            # fixed cost (every window is a contiguous piece of the text either way).
            found: list[tuple[int, int]] = []
            text = norm.text
            for a, b in _merge_small(sorted(zip(lo.tolist(), hi.tolist(), strict=True))):
                rows = self._allow.find(text[a:b])
                found += [(a + fs, a + fe) for _, fs, fe in (rows.tolist() if isinstance(rows, np.ndarray) else rows)]
            return found
        order = np.argsort(lo, kind="stable")
        runs = _merge_runs(lo[order], hi[order])
        return [(a, b) for _, a, b in _find_in_runs(self._allow, norm.code_points(), runs).tolist()]

    def to_hits(self, norm: Normalized, spans: np.ndarray, allow: Sequence[tuple[int, int]]) -> list[Hit]:
        """Turn raw spans into :class:`Hit` objects (allow-list, folding, offset mapping)."""
        # A batch has a handful of spans: below _SMALL_SPANS, lists beat the fixed cost of ~40 numpy calls.
        fold = self._fold_small if len(spans) <= _SMALL_SPANS else self._fold
        idx, s, e, heard = fold(spans, allow)
        mapped = norm.spans(s, e)
        pats = self._patterns
        original = norm.original
        hits: list[Hit] = []
        group = self._group_idx
        for i, by_sound, (a, b) in zip(idx, heard, mapped, strict=True):
            p = pats[i]
            if i in group:
                # Names a group, insults nobody: evidence only, unless the policy says otherwise.
                hits.append(
                    Hit(p.category, "lexicon", p.term, f"{p.list}{GROUP_SUFFIX}", a, b, original[a:b], "review")
                )
            elif p.severity == "block" and is_mention(original, a, b):
                # Quoted or condemned, not used: a softer signal, so a person decides instead of a reject.
                hits.append(
                    Hit(p.category, "lexicon", p.term, f"{p.list}{MENTION_SUFFIX}", a, b, original[a:b], "review")
                )
            elif by_sound:
                # Sounds like the term but is spelled otherwise: evidence for a person to weigh, never a block.
                hits.append(Hit(p.category, "lexicon", p.term, f"{p.list}~sound", a, b, original[a:b], "review"))
            else:
                hits.append(Hit(p.category, "lexicon", p.term, p.list, a, b, original[a:b], p.severity))  # type: ignore[arg-type]
        return hits

    def _fold(
        self, spans: np.ndarray, allow: Sequence[tuple[int, int]]
    ) -> tuple[list[int], list[int], list[int], list[int]]:
        """The spans :meth:`to_hits` reports, ``(pattern, start, end, by_sound)`` as lists in report order:
        sorted, allow-listed ones dropped, contained ones folded (whole-array steps, for many spans)."""
        idx, s, e, heard = spans[:, 0], spans[:, 1], spans[:, 2], spans[:, 3]
        # by start, longest first, a spelled match before a sound-alike one of the same span
        order = np.lexsort((heard, s - e, s))
        idx, s, e, heard = idx[order], s[order], e[order], heard[order]
        keep = np.ones(len(idx), dtype=bool)
        if allow:
            # Inside an allow span: among allow spans starting at or before s, the furthest end reaches e.
            al = np.array(sorted(allow), dtype=np.int64)
            maxend = np.maximum.accumulate(al[:, 1])
            k = np.searchsorted(al[:, 0], s, side="right") - 1
            keep &= ~((k >= 0) & (maxend[np.maximum(k, 0)] >= e))
        # Folding: a hit inside an earlier (same start or earlier, longer) hit of the same category is dropped;
        # containment is transitive, so comparing with the running furthest end of the category is enough.
        # Spelled and sound-alike hits fold separately, so a sound-alike review hit never swallows a spelled
        # block hit; a sound-alike hit inside a spelled one of its category is dropped afterwards.
        live = np.flatnonzero(keep)
        if len(live) > 1:
            # All categories at once: sorting by (category, spelled/sound) and offsetting each group's ends by
            # its rank times a bound on any end makes one running maximum act as a running maximum per group.
            cats = self._cat_code[idx[live]]
            group = cats * 2 + heard[live]
            by_group = live[np.argsort(group, kind="stable")]  # stable: start order within a group
            g = np.sort(group, kind="stable")
            big = int(e.max()) + 1
            shifted = e[by_group] + g * big
            prev = np.concatenate(([-1], np.maximum.accumulate(shifted)[:-1]))
            keep[by_group[prev >= shifted]] = False
            sounded = live[keep[live] & (heard[live] == 1)]
            if len(sounded):
                spelled = live[keep[live] & (heard[live] == 0)]
                if len(spelled):
                    sp_cat = self._cat_code[idx[spelled]]
                    sp = spelled[np.argsort(sp_cat, kind="stable")]
                    sp_cat = np.sort(sp_cat, kind="stable")
                    reach = np.maximum.accumulate(e[sp] + sp_cat * big)
                    so_cat = self._cat_code[idx[sounded]]
                    k = np.searchsorted(sp_cat * big + s[sp], so_cat * big + s[sounded], side="right") - 1
                    kk = np.maximum(k, 0)
                    inside = (k >= 0) & (sp_cat[kk] == so_cat) & (reach[kk] - so_cat * big >= e[sounded])
                    keep[sounded[inside]] = False
        return idx[keep].tolist(), s[keep].tolist(), e[keep].tolist(), heard[keep].tolist()

    def _fold_small(
        self, spans: np.ndarray, allow: Sequence[tuple[int, int]]
    ) -> tuple[list[int], list[int], list[int], list[int]]:
        """:meth:`_fold` in plain Python, for a few spans (same result: a test compares the two)."""
        # Rows of (pattern, start, end, by_sound, category); stable like np.lexsort: ties keep their order.
        cats = self._cat_code[spans[:, 0]].tolist()
        rows = sorted(
            ([*r, c] for r, c in zip(spans.tolist(), cats, strict=True)), key=lambda r: (r[1], r[1] - r[2], r[3])
        )
        if allow:
            al = sorted(allow)
            starts = [a for a, _ in al]
            maxend = list(itertools.accumulate((b for _, b in al), max))
            kept = []
            for r in rows:
                k = bisect.bisect_right(starts, r[1]) - 1
                if not (k >= 0 and maxend[k] >= r[2]):
                    kept.append(r)
            rows = kept
        if len(rows) > 1:
            reach: dict[tuple[int, int], int] = {}  # (category, by_sound) -> furthest end so far
            folded = []
            for r in rows:
                key = (r[4], r[3])
                far = reach.get(key, -1)
                if far < r[2]:
                    folded.append(r)
                reach[key] = max(far, r[2])
            # A sound-alike hit inside a kept spelled hit of its category (that starts no later) is dropped.
            spelled = [(r[4], r[1], r[2]) for r in folded if not r[3]]
            rows = [
                r for r in folded if not r[3] or not any(c == r[4] and a <= r[1] and b >= r[2] for c, a, b in spelled)
            ]
        if not rows:
            return [], [], [], []
        idx, s, e, heard, _ = (list(c) for c in zip(*rows, strict=True))
        return idx, s, e, heard


def _as_array(matches: Iterable[tuple[int, int, int]]) -> np.ndarray:
    """Matches as an ``(n, 3)`` int64 array (empty-safe)."""
    if isinstance(matches, np.ndarray):
        return matches
    arr = np.array(matches if isinstance(matches, list) else list(matches), dtype=np.int64)
    return arr.reshape(-1, 3)


_SMALL_SPANS = 48  # below this many raw spans, to_hits folds with lists (see Lexicon._fold_small)
_HOMOPHONE_WINDOW = 16  # characters around a homophone spelling searched again (longer than any useful term)


def _merge_windows(spans: list[tuple[int, int]], n: int, pad: int) -> list[tuple[int, int]]:
    """Padded, merged windows around ``spans`` (sorted), clipped to ``[0, n)``."""
    out: list[tuple[int, int]] = []
    for s, e in spans:
        a, b = max(0, s - pad), min(n, e + pad)
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


_TRI_MUL = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing of a trigram id into the trigram table
_EMPTY = np.zeros((0, 3), dtype=np.int64)
_SOUND_BASE = 0xF0000  # dense sound codes as characters (Supplementary Private Use Area-A)
_BARRIER = 10  # "\n": no pattern contains it, so no match crosses from one compacted window to the next
_LINE_BREAK = chr(_BARRIER)  # the batch joiner too; Lexicon leaves out the terms that contain it


class _Gate:
    """A cheap pre-check of where a pattern set can match, so the automaton reads only those places.

    Characters map to dense codes (0 for a character in no pattern; the lexicon keeps the lookup table). A
    match must start with one of the patterns' first bigrams: one lookup per character (hashed bigram id →
    flags) finds the few positions where one does. There, hashed trigram and 4-gram tables tell whether a
    pattern can start with those characters and give the longest one that can. The windows
    ``[start, start + longest)`` are all the automaton needs to read: on ordinary text a few % of it. Hash
    collisions only widen or add windows (a false candidate costs a few characters of automaton), never lose
    a match.
    """

    __slots__ = ("bi", "bits", "bmask", "first", "k", "qshift", "quad", "tri", "tribits", "tshift")

    def __init__(self, k: int, patterns: Sequence[Sequence[int]]) -> None:
        self.k = k
        # Small tables on purpose (256 KB + 2 x 512 KB for the default list): they stay in cache beside the
        # automaton; the extra collisions only widen a few windows.
        bbits = max(10, min(18, (k * k - 1).bit_length(), (len(patterns) * 64).bit_length()))
        self.bmask = np.uint32((1 << bbits) - 1)
        tbits = max(10, min(19, (len(patterns) * 16).bit_length()))
        self.tshift = np.uint64(64 - tbits)
        self.qshift = np.uint64(64 - tbits)
        self.bi = np.zeros(1 << bbits, dtype=np.uint8)  # bit 0: a longer pattern starts so; 1: a 2-char one; 2: 1
        self.tri = np.zeros(1 << tbits, dtype=np.uint8)  # bit 0: a 3-char pattern; bit 1: a longer one starts so
        self.quad = np.zeros(1 << tbits, dtype=np.uint8)  # longest pattern starting with the (hashed) 4-gram
        self.first = np.zeros(max(k, 0x10000), dtype=bool)  # codes that start a pattern
        self.first[[p[0] for p in patterns if p]] = True
        if any(len(p) > 255 for p in patterns):
            # The window length is a byte: a longer pattern could be cut, so it is refused outright.
            raise LexiconError("lexicon patterns are limited to 255 characters")
        for a in (p[0] for p in patterns if len(p) == 1):  # one character: every bigram it starts (barrier too)
            self.bi[(a * k + np.arange(k, dtype=np.int64)) & int(self.bmask)] |= 4
        two = np.array([p[:2] for p in patterns if len(p) == 2], dtype=np.int64).reshape(-1, 2)
        self.bi[(two[:, 0] * k + two[:, 1]) & int(self.bmask)] |= 2
        three = np.array([p[:3] for p in patterns if len(p) >= 3], dtype=np.int64).reshape(-1, 3)
        lens = np.array([len(p) for p in patterns if len(p) >= 3], dtype=np.int64)
        y = three[:, 0] * k + three[:, 1]
        self.bi[y & int(self.bmask)] |= 1
        h3 = self._hash(y.astype(np.uint64), three[:, 2].astype(np.uint64), self.tshift)
        self.tri[h3[lens == 3]] |= 1
        self.tri[h3[lens >= 4]] |= 2
        four = np.array([p[:4] for p in patterns if len(p) >= 4], dtype=np.int64).reshape(-1, 4)
        x = (four[:, 0] * k + four[:, 1]).astype(np.uint64) * np.uint64(k) + four[:, 2].astype(np.uint64)
        h4 = self._hash(x, four[:, 3].astype(np.uint64), self.qshift)
        np.maximum.at(self.quad, h4, lens[lens >= 4].astype(np.uint8))
        # One bit per bigram entry (any flag set), for the compiled loop: 32 KB for the default list, so the
        # test most positions fail stays in the first-level cache instead of reading the 256 KB byte table.
        self.bits = np.packbits(self.bi != 0, bitorder="little")
        # The trigram flags as two bit planes (64 KB each instead of one 512 KB byte table), for the same reason.
        self.tribits = np.concatenate([np.packbits((self.tri & flag) != 0, bitorder="little") for flag in (1, 2)])

    def _hash(self, prefix: np.ndarray, c: np.ndarray, shift: np.uint64) -> np.ndarray:
        """Fibonacci hash of the n-gram id ``prefix * k + c`` (uint64 arithmetic wraps, on both sides alike)."""
        return ((prefix * np.uint64(self.k) + c) * _TRI_MUL) >> shift

    def bigrams(self, codes: np.ndarray, mask: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(c, y)``: the codes (``& mask`` if given) followed by three barriers (so every position has a
        4-gram), and the bigram id at every position of the text."""
        n = len(codes)
        c = np.zeros(n + 3, dtype=np.uint32)
        if mask is None:
            c[:n] = codes
        else:
            np.bitwise_and(codes, np.uint32(mask), out=c[:n])
        return c, c[:n] * np.uint32(self.k) + c[1 : n + 1]

    def candidates(self, c: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions where a pattern may start, and the longest pattern that may start at each."""
        pos = np.flatnonzero(np.take(self.bi, y & self.bmask))
        if not len(pos):
            return pos, pos
        return self._refine(pos, y[pos], c[pos + 2], c[pos + 3])

    def sparse_candidates(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`candidates` for a pattern set whose first characters are rare in text (homophones, sound
        keys): one lookup of the dense ``codes`` finds the positions holding a first character, and the
        other checks run only there."""
        pos = np.flatnonzero(np.take(self.first, codes))
        if not len(pos):
            return pos, pos
        n = len(codes)
        c = np.zeros((4, len(pos)), dtype=np.uint32)
        for j in range(4):  # the character at pos + j (a barrier past the end)
            at = pos + j
            ok = at < n
            c[j, ok] = codes[at[ok]]
        y = c[0] * np.uint32(self.k) + c[1]
        live = np.flatnonzero(np.take(self.bi, y & self.bmask))
        return self._refine(pos[live], y[live], c[2, live], c[3, live])

    def _refine(self, pos: np.ndarray, y: np.ndarray, c2: np.ndarray, c3: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """At bigram candidates ``pos`` (bigram ids ``y``, next characters ``c2``, ``c3``): the longest pattern
        that can start there, candidates where none can dropped."""
        f = np.take(self.bi, y & self.bmask)
        longest = np.where(f & 2, 2, np.where(f & 4, 1, 0)).astype(np.int64)
        has3 = np.flatnonzero(f & 1)
        if len(has3):
            y3 = y[has3].astype(np.uint64)
            t = np.take(self.tri, self._hash(y3, c2[has3].astype(np.uint64), self.tshift))
            longest[has3[(t & 1) != 0]] = 3
            has4 = np.flatnonzero(t & 2)
            if len(has4):
                x = y3[has4] * np.uint64(self.k) + c2[has3[has4]].astype(np.uint64)
                q = np.take(self.quad, self._hash(x, c3[has3[has4]].astype(np.uint64), self.qshift))
                at = has3[has4]
                longest[at] = np.maximum(longest[at], q)
        live = longest > 0
        return pos[live], longest[live]

    def spec(self, shift: int, *, sparse: bool, windows: bool) -> tuple[object, ...]:
        """This gate as ``moderation/_lexfast.c``'s ``gates`` takes it, over the codes
        ``(lut[cps] >> shift) & 0xFFFF``: ``sparse`` → :meth:`sparse_candidates`, else :meth:`candidates`;
        ``windows`` → their merged windows (as :meth:`windows`) instead of ``(positions, longest)``."""
        return (
            shift, self.first if sparse else None, windows, self.k,
            self.bi, int(self.bmask), self.tribits, int(self.tshift), self.quad, int(self.qshift), self.bits,
        )  # fmt: skip

    def windows(self, c: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Merged ``[start, end)`` windows that hold every match (see :meth:`bigrams` for ``c`` and ``y``)."""
        pos, longest = self.candidates(c, y)
        if not len(pos):
            return pos, pos
        return _merge_runs(pos, np.minimum(pos + longest, len(y)))


def _compiled_gates(
    lib: ModuleType, cps: np.ndarray, lut: np.ndarray, specs: Sequence[tuple[object, ...]]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Several gates (:meth:`_Gate.spec`) in one pass of the C loop over the text: the code points and their
    lookup are read once for all of them."""
    return [
        (np.frombuffer(a, dtype=np.int64), np.frombuffer(b, dtype=np.int64))
        for a, b in lib.gates(cps, lut, tuple(specs))
    ]


def _unique_rows(rows: np.ndarray) -> np.ndarray:
    """``np.unique(rows, axis=0)`` (sorted, deduplicated rows), with lists below _SMALL_SPANS rows, where
    numpy's structured-view sort costs more than the work."""
    if len(rows) > _SMALL_SPANS:
        return np.unique(rows, axis=0)
    return np.array(sorted(set(map(tuple, rows.tolist()))), dtype=np.int64).reshape(-1, rows.shape[1])


def _merge_small(windows: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """:func:`_merge_runs` for a short list of windows sorted by start (touching windows merge)."""
    out: list[tuple[int, int]] = []
    for a, b in windows:
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _merge_runs(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Union of windows given sorted by start, as disjoint runs (touching windows merge)."""
    reach = np.maximum.accumulate(ends)
    new = np.concatenate(([True], starts[1:] > reach[:-1]))
    first = np.flatnonzero(new)
    last = np.concatenate((first[1:] - 1, [len(starts) - 1]))
    return starts[first], reach[last]


def _find_in_runs(
    matcher: _Matcher,
    chars: np.ndarray,
    runs: tuple[np.ndarray, np.ndarray],
    shift: int = 0,
    base: int = 0,
    lut: np.ndarray | None = None,
) -> np.ndarray:
    """Matches of ``matcher`` inside ``runs`` of the text whose code points are ``chars``, in text offsets
    (``(chars >> shift) + base`` when those are given: the characters are read from a lookup of the text;
    ``lut[chars]`` first when ``lut`` is given, so the lookup is made for the runs only).

    The runs are cut out and joined by a barrier into one short string, so the automaton is called once;
    every match lies inside one run, which is a contiguous piece of the text, so its offsets map back exactly.
    """
    rs, re_ = runs
    if not len(rs):
        return _EMPTY
    if (lib := fastpath.compiled()) is not None:
        text, src_bytes = lib.compact(chars, rs, re_, lut, shift, base, _BARRIER)
        m = _as_array(matcher.find(text))
        if len(m):
            src = np.frombuffer(src_bytes, dtype=np.int64)
            m[:, 1] = src[m[:, 1]]
            m[:, 2] = src[m[:, 2] - 1] + 1
        return m
    lens = re_ - rs + 1  # each run plus its barrier
    cum = np.cumsum(lens)
    begin = cum - lens
    src = np.arange(int(cum[-1]), dtype=np.int64) - np.repeat(begin - rs, lens)
    bar = cum - 1
    src[bar] = 0
    compact = chars[src].astype(np.uint32)
    if lut is not None:
        compact = np.take(lut, compact)
    if shift or base:
        compact = (compact >> np.uint32(shift)) + np.uint32(base)
    compact[bar] = _BARRIER
    m = _as_array(matcher.find(compact.tobytes().decode("utf-32-le", "surrogatepass")))
    if len(m):
        m[:, 1] = src[m[:, 1]]
        m[:, 2] = src[m[:, 2] - 1] + 1
    return m


@dataclass(frozen=True, slots=True)
class OrgLists:
    """An organisation's compiled deny-/allow-lists at one version (see ``Screener.compile_org_lists``)."""

    key: str
    version: int
    lexicon: Lexicon

    @classmethod
    def compile(
        cls,
        deny: Iterable[tuple[str, str, str]],
        allow: Iterable[str],
        version: int,
        key: str = "org",
        backend: str = DEFAULT_BACKEND,
    ) -> OrgLists:
        """Compile ``deny`` = ``[(term, category, severity)]`` and ``allow`` = ``[term]``.

        The category may be any taxonomy name (``custom`` for the organisation's own concerns).
        """
        entries = []
        for item in deny:
            try:
                term, category, severity = item
            except (TypeError, ValueError) as exc:
                raise LexiconError(f"org list {key}: deny entry {item!r} is not (term, category, severity)") from exc
            entries.append(Entry(str(term), str(category), str(severity), f"org:{key}:v{version}"))
        lex = Lexicon(entries, allow, list_name=f"org:{key}", version=f"{key}:v{version}", backend=backend, pinyin=True)
        return cls(key, version, lex)


# ---------------------------------------------------------------------------------------------------------------
# Loading the shipped files: the only IO in this module.
def read_tsv(path: Path) -> list[Entry]:
    """Read ``term<TAB>category<TAB>severity[<TAB>source]`` lines (``#`` comments allowed)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise LexiconError(f"cannot read lexicon {path}: {exc}") from exc
    out: list[Entry] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) < 3:
            raise LexiconError(f"{path}:{n}: expected term<TAB>category<TAB>severity, got {line!r}")
        out.append(Entry(parts[0], parts[1], parts[2], parts[3] if len(parts) > 3 else path.stem))
    return out


def load_allow(path: Path | None = None) -> list[str]:
    """The default allow-list terms."""
    path = path or DATA_DIR / "allow.txt"
    try:
        return [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip() and ln[0] != "#"]
    except OSError as exc:
        raise LexiconError(f"cannot read allow-list {path}: {exc}") from exc


#: Source files whose code decides what a compiled lexicon holds: a change to any of them invalidates the cache.
_CODE_FILES = ("lexicon.py", "normalize.py", "spelling.py", "types.py", "policy.py")
_CACHE_FORMAT = 2  # 2: memory-mapped buffers (_read_cache)


def _cache_path(name: str, backend: str, cache_dir: Path, inputs: Sequence[Path]) -> Path:
    """Where the compiled ``name`` lexicon is cached: keyed by a hash of its input files, the code that
    compiles it and the versions of the libraries its tables come from."""
    import importlib.metadata

    # unicodedata's version decides NFKC and the character classes the normaliser's tables hold.
    h = hashlib.sha256(f"{_CACHE_FORMAT}:{name}:{backend}:{unicodedata.unidata_version}".encode())
    for dist in ("OpenCC", "pypinyin", "numpy"):
        try:
            h.update(f"{dist}={importlib.metadata.version(dist)};".encode())
        except importlib.metadata.PackageNotFoundError:
            h.update(f"{dist}=?;".encode())
    here = Path(__file__).parent
    for path in [*(here / f for f in _CODE_FILES), *inputs]:
        h.update(path.name.encode())
        h.update(path.read_bytes() if path.is_file() else b"<absent>")
    return cache_dir / "lexicon" / f"{name}-{h.hexdigest()[:24]}.pickle"


# The cache file: a header, the pickle of ``(lexicon, tables)`` (protocol 5) and, page-aligned, the buffers
# that pickle left out of band (every numpy array, the packed tables). The header is _CACHE_MAGIC, the
# pickle's length, the number of buffers, then an (offset, length) pair per buffer, all little-endian uint64.
_CACHE_MAGIC = b"MMLEX\x00v2"
_ALIGN = 4096


def _read_cache(path: Path, *, replace_tables: bool = False) -> Lexicon | None:
    """The cached lexicon, or ``None`` when absent or unreadable (then it is rebuilt and written again).
    ``replace_tables``: the normaliser's tables built in this process are replaced by the file's
    (:func:`moderation.normalize.prime_tables`).

    The file is memory-mapped read-only and its buffers are handed to the unpickler, so the lexicon's arrays
    and the normaliser's lookup tables (a dozen tables of one entry per code point, ~35 MB) are views of the
    file: resident only where a text's characters touch them, shared by every process on the machine that
    maps the same file, and read-only (nothing writes to a table once built).
    """
    try:
        with path.open("rb") as fh:
            try:
                mapped: mmap.mmap | bytes = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            except (OSError, ValueError):  # a file system without mmap, or an empty file: read it instead
                mapped = fh.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("lexicon cache %s unreadable, rebuilding: %s", path, exc)
        return None
    try:
        view = memoryview(mapped)
        head = len(_CACHE_MAGIC) + 16
        if len(view) < head or view[: len(_CACHE_MAGIC)] != _CACHE_MAGIC:
            raise ValueError("not a lexicon cache file")
        size, count = struct.unpack_from("<QQ", view, len(_CACHE_MAGIC))
        spans = struct.unpack_from(f"<{2 * count}Q", view, head)
        body = head + 16 * count
        if body + size > len(view) or any(o + n > len(view) for o, n in zip(spans[::2], spans[1::2], strict=True)):
            raise ValueError("truncated")
        buffers = [view[o : o + n] for o, n in zip(spans[::2], spans[1::2], strict=True)]
        # Our own file, written by _write_cache under the user's cache directory, named by a content hash.
        lexicon, tables = pickle.loads(view[body : body + size], buffers=buffers)  # noqa: S301
    except Exception as exc:  # any damage to a cache file means "rebuild", never a failure
        log.warning("lexicon cache %s unreadable, rebuilding: %s", path, exc)
        return None
    if isinstance(mapped, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED"):
        # The pickle itself has been read into objects: its pages (~2.5 MB) need not stay in this process.
        with contextlib.suppress(OSError, ValueError):
            mapped.madvise(mmap.MADV_DONTNEED, 0, min(spans[::2], default=len(view)) // _ALIGN * _ALIGN)
    if not isinstance(lexicon, Lexicon) or not isinstance(tables, dict):
        return None
    prime_tables(tables, replace=replace_tables)
    return lexicon


def _write_cache(path: Path, lexicon: Lexicon) -> None:
    """Write atomically (temporary file + rename), so concurrent workers never read half a file."""
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps((lexicon, table_state(packed=True)), protocol=5, buffer_callback=buffers.append)
    raws = [b.raw() for b in buffers]  # contiguous bytes of each buffer (numpy hands out contiguous ones)
    head = len(_CACHE_MAGIC) + 16 + 16 * len(raws)
    spans: list[int] = []
    at = -(-(head + len(data)) // _ALIGN) * _ALIGN
    for raw in raws:
        spans += [at, raw.nbytes]
        at = -(-(at + raw.nbytes) // _ALIGN) * _ALIGN  # page-aligned: a table's pages are its own
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(_CACHE_MAGIC + struct.pack(f"<QQ{len(spans)}Q", len(data), len(raws), *spans))
                fh.write(data)
                for offset, raw in zip(spans[::2], raws, strict=True):
                    fh.write(b"\x00" * (offset - fh.tell()))
                    fh.write(raw)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        for old in path.parent.glob(path.name.split("-", 1)[0] + "-*.pickle"):
            if old != path:  # earlier versions of this lexicon: never read again
                with contextlib.suppress(OSError):
                    old.unlink()
    except OSError as exc:
        # A read-only or full cache directory costs start-up time, nothing else.
        log.warning("cannot write lexicon cache %s: %s", path, exc)


@lru_cache(maxsize=4)
def load_builtin(name: str = "default", backend: str = DEFAULT_BACKEND, cache_dir: Path | None = None) -> Lexicon:
    """The shipped lexicon ``default`` (curated) or ``extended`` (every term, for benchmarks/strict use).

    Built once per process and cached on disk under ``cache_dir / "lexicon"`` (default: the moderation
    cache directory, ``ModerationConfig.cache_dir``): compiling the default takes ~3-4 s, loading the cache
    ~0.3 s (the automata are rebuilt from their pattern lists). The cache file is keyed by a hash of the
    lexicon files and of the code that compiles them, so an edit to either is picked up on the next start.
    """
    if name not in ("default", "extended"):
        raise LexiconError(f"unknown builtin lexicon {name!r}")
    try:
        version = (DATA_DIR / "VERSION").read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise LexiconError(f"lexicon VERSION missing in {DATA_DIR}; run python -m moderation.build_lexicon") from exc
    sound_path, bigram_path = DATA_DIR / "sound.txt", DATA_DIR / "common_bigrams.txt"
    group_path, allow_path = DATA_DIR / "group.txt", DATA_DIR / "allow.txt"
    tsv = DATA_DIR / f"{name}.tsv"
    root = (cache_dir if cache_dir is not None else DEFAULT_CACHE_DIR).expanduser()
    path = _cache_path(
        name, backend, root, [DATA_DIR / "VERSION", tsv, allow_path, sound_path, bigram_path, group_path]
    )
    cached = _read_cache(path)
    if cached is not None:
        return_freed_memory()  # the automata builds of __setstate__ leave ~20 MB of freed heap behind
        return cached
    if path.exists():
        # A damaged cache file may be the one this process maps its tables from, changed in place under the
        # mapping (our writer never does that: it renames a new file over the old one); reading those pages
        # now could fault. The compile builds its own tables instead.
        forget_tables()
    entries = read_tsv(tsv)
    sound = load_allow(sound_path) if sound_path.is_file() else []
    bigrams = load_allow(bigram_path) if bigram_path.is_file() else []
    group = load_allow(group_path) if group_path.is_file() else []
    lexicon = Lexicon(
        entries,
        load_allow(allow_path),
        list_name=name,
        version=version,
        backend=backend,
        sound=sound,
        common_bigrams=bigrams,
        group_words=group,
    )
    _write_cache(path, lexicon)
    # The normaliser's tables read back from the file just written: this process then holds them as every
    # later one does (mapped, ~50 MB less than the ones the compile built). The lexicon read with them is
    # dropped: the compiled one is the same, and keeps no view of a file that could be damaged in place.
    _read_cache(path, replace_tables=True)
    return_freed_memory()  # the compile's intermediates (term lists, dicts, automata builds) are freed now
    return lexicon
