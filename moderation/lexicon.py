"""Lexicon matching: Aho–Corasick over the normalised text, its homophone view and its pinyin view.

The :class:`Lexicon` is compiled once from entries (pure: no IO); :func:`load_builtin` is the one place that
reads the shipped files in ``moderation/data/lexicons/``. Organisation lists compile into their own small
:class:`Lexicon` (see :class:`OrgLists`), so a new list version never rebuilds the 47k-term default.

How a hit is found and reported:

1. every term is normalised with :func:`moderation.normalize.normalize_term`, the same function the text goes
   through, so ``習近平``/``五.星`` variants of a term collapse to one pattern;
2. the automaton runs over the normalised text; a term that starts/ends with a Latin letter or digit must not
   touch another letter/digit there (``sb`` must not fire inside ``usb``);
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
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np

from moderation.context import is_mention
from moderation.normalize import (
    Normalized,
    apply_homophones,
    homophone_spans,
    is_pinyin_word,
    normalize_term,
    pinyin_view,
    sound_key,
    sound_view,
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


def _default_backend() -> str:
    # ahocorasick_rs measured 6-10x faster than pyahocorasick on the 105k-term list (bench/moderation.py);
    # pyahocorasick stays as the fallback where the Rust wheel is not installed.
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
    """pyahocorasick (C): ``iter`` yields the inclusive end index and the stored value."""

    def __init__(self, patterns: Sequence[str]) -> None:
        import ahocorasick

        self._auto = ahocorasick.Automaton()
        for i, p in enumerate(patterns):
            self._auto.add_word(p, (i, len(p)))
        self._empty = not patterns
        if not self._empty:
            self._auto.make_automaton()

    def find(self, text: str) -> Iterator[tuple[int, int, int]]:
        if self._empty:
            return
        for end, (i, n) in self._auto.iter(text):
            yield i, end + 1 - n, end + 1


class _RustAhoCorasick:
    """ahocorasick_rs (Rust, via PyO3): returns a list of ``(index, start, end)`` in character offsets."""

    def __init__(self, patterns: Sequence[str]) -> None:
        import ahocorasick_rs

        self._ac = (
            ahocorasick_rs.AhoCorasick(list(patterns), matchkind=ahocorasick_rs.MATCHKIND_STANDARD)
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


@dataclass(frozen=True, slots=True)
class _Pattern:
    term: str  # as written in the list (shown to reviewers)
    category: str
    severity: str
    list: str
    left_alnum: bool  # normalised pattern starts with a Latin letter/digit → needs a boundary before it
    right_alnum: bool


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
        self._main = _matcher(pattern_texts, backend)
        self._pinyin_keys = list(pinyin_texts)
        self._pinyin_idx = [pinyin_texts[k] for k in self._pinyin_keys]
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
        self._common_bigrams = frozenset(common_bigrams)
        self._group = frozenset(g for g in (normalize_term(t) for t in group_words) if g)
        self._group_idx = frozenset(i for i, p in enumerate(self._pattern_texts) if p in self._group)
        allow_norm = sorted({a for a in (normalize_term(t) for t in allow) if a})
        self._allow = _matcher(allow_norm, backend) if allow_norm else None

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

    # -- matching ------------------------------------------------------------------------------------------
    def raw_spans(self, norm: Normalized) -> np.ndarray:
        """``(pattern_index, start, end, by_sound)`` rows in normalised coordinates, before allow-list and folding.

        Vectorised: a dense lexicon finds a match every dozen characters, so per-match Python would dominate.
        ``by_sound`` is 1 for a sound-alike match (沙币 for 傻逼) that is not also a spelled match.
        """
        text = norm.text
        n = len(text)
        found = [self._boundary_ok(_as_array(self._main.find(text)), text)]
        changed = homophone_spans(text)
        if changed:
            alt = apply_homophones(text, changed) or text
            # Only windows around the replaced spellings need a second look; a match must overlap one of them.
            hs = np.array([h[0] for h in changed])
            he = np.array([h[1] for h in changed])
            for cs, ce in _merge_windows(changed, n, _HOMOPHONE_WINDOW):
                m = _as_array(self._main.find(alt[cs:ce]))
                m[:, 1:] += cs
                m = self._boundary_ok(m, alt)
                overlaps = (hs[None, :] < m[:, 2:3]) & (m[:, 1:2] < he[None, :])
                found.append(m[overlaps.any(axis=1)])
        if self._pinyin is not None:
            view = pinyin_view(text)
            if view is not None:
                rows = []
                for k, s, e in self._pinyin.find(view.text):
                    span = view.source_span(s, e)
                    if span is not None:
                        rows.append((self._pinyin_idx[k], span[0], span[1]))
                found.append(_as_array(rows))
        spelled = np.concatenate(found) if len(found) > 1 else found[0]
        if len(found) > 1 and len(spelled):
            spelled = np.unique(spelled, axis=0)
        out = np.column_stack((spelled, np.zeros(len(spelled), dtype=np.int64)))
        if self._sound is not None:
            heard_text = sound_view(text)
            if heard_text is not None:
                rows = []
                common = self._common_bigrams
                for k, a, b in self._sound.find(heard_text):
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

    def _boundary_ok(self, m: np.ndarray, text: str) -> np.ndarray:
        """Drop matches of Latin/digit-edged terms that touch another Latin letter or digit (sb in usb)."""
        if not len(m):
            return m
        idx, s, e = m[:, 0], m[:, 1], m[:, 2]
        left, right = self._left_alnum[idx], self._right_alnum[idx]
        if not (left.any() or right.any()):
            return m
        cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        alnum = np.concatenate((((cps >= 97) & (cps <= 122)) | ((cps >= 48) & (cps <= 57)), [False]))
        bad = (left & (s > 0) & alnum[np.maximum(s - 1, 0)]) | (right & alnum[e])
        return m[~bad]

    def allow_spans(self, norm_text: str) -> list[tuple[int, int]]:
        """Normalised spans covered by this lexicon's allow-list."""
        if self._allow is None:
            return []
        return [(s, e) for _, s, e in self._allow.find(norm_text)]

    def match(self, norm: Normalized, extra_allow: Sequence[tuple[int, int]] = ()) -> list[Hit]:
        """Hits in original coordinates, allow-listed ones removed, contained duplicates folded."""
        spans = self.raw_spans(norm)
        if not len(spans):
            return []
        allow = [*self.allow_spans(norm.text), *extra_allow]
        return self.to_hits(norm, spans, allow)

    def to_hits(self, norm: Normalized, spans: np.ndarray, allow: Sequence[tuple[int, int]]) -> list[Hit]:
        """Turn raw spans into :class:`Hit` objects (allow-list, folding, offset mapping)."""
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
        cats = self._cat_code[idx]
        for c in np.unique(cats[keep]):
            for by_sound in (0, 1):
                sel = np.flatnonzero(keep & (cats == c) & (heard == by_sound))
                ends = e[sel]
                prev = np.concatenate(([-1], np.maximum.accumulate(ends)[:-1]))
                keep[sel[prev >= ends]] = False
            spelled = np.flatnonzero(keep & (cats == c) & (heard == 0))
            sounded = np.flatnonzero(keep & (cats == c) & (heard == 1))
            if len(spelled) and len(sounded):
                reach = np.maximum.accumulate(e[spelled])  # spelled hits are already in start order
                k = np.searchsorted(s[spelled], s[sounded], side="right") - 1
                inside = (k >= 0) & (reach[np.maximum(k, 0)] >= e[sounded])
                keep[sounded[inside]] = False
        idx, s, e, heard = idx[keep], s[keep], e[keep], heard[keep]
        mapped = norm.spans(s.tolist(), e.tolist())
        pats = self._patterns
        original = norm.original
        hits: list[Hit] = []
        group = self._group_idx
        for i, by_sound, (a, b) in zip(idx.tolist(), heard.tolist(), mapped, strict=True):
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


def _as_array(matches: Iterable[tuple[int, int, int]]) -> np.ndarray:
    """Matches as an ``(n, 3)`` int64 array (empty-safe)."""
    arr = np.array(matches if isinstance(matches, list) else list(matches), dtype=np.int64)
    return arr.reshape(-1, 3)


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


@lru_cache(maxsize=4)
def load_builtin(name: str = "default", backend: str = DEFAULT_BACKEND) -> Lexicon:
    """The shipped lexicon ``default`` (curated) or ``extended`` (every term, for benchmarks/strict use).

    Cached: the automaton is built once per process (~1-2 s for the default).
    """
    if name not in ("default", "extended"):
        raise LexiconError(f"unknown builtin lexicon {name!r}")
    try:
        version = (DATA_DIR / "VERSION").read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise LexiconError(f"lexicon VERSION missing in {DATA_DIR}; run python -m moderation.build_lexicon") from exc
    entries = read_tsv(DATA_DIR / f"{name}.tsv")
    sound_path, bigram_path = DATA_DIR / "sound.txt", DATA_DIR / "common_bigrams.txt"
    sound = load_allow(sound_path) if sound_path.is_file() else []
    bigrams = load_allow(bigram_path) if bigram_path.is_file() else []
    group_path = DATA_DIR / "group.txt"
    group = load_allow(group_path) if group_path.is_file() else []
    return Lexicon(
        entries,
        load_allow(),
        list_name=name,
        version=version,
        backend=backend,
        sound=sound,
        common_bigrams=bigrams,
        group_words=group,
    )
