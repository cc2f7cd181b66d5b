"""Text normaliser: the view that matchers see, plus an offset map back to the original text.

Pure (no IO). What it undoes, in the order applied:

1. **Per-character folding**, one ``str.translate`` table built once per process: NFKC (full-width letters and
   digits, mathematical/fancy letters, circled ``Ⓕⓤ`` and parenthesised ``⒦⑴`` forms), lower case,
   traditional → simplified (OpenCC ``t2s`` applied character by character so the map stays 1:1), dingbat and
   negative-circled digits ``❶➀⓵``, negative-squared/circled letters ``🅰🅐``, small capitals and the
   Cyrillic/Greek letters that look Latin, ``艹`` → ``操``. Zero-width and other invisible characters (format
   characters, variation selectors, combining marks) become a marker that step 3 deletes. A lone surrogate
   becomes U+FFFD (a separator, as it was), so the normalised text always encodes as UTF-8.
2. **Number styles in digit runs**: inside a run of at least five digit-like characters, Chinese numerals
   (``一二三``, ``壹贰叁``, ``幺``) become ASCII digits, so ``一三八①③⑧0013`` reads ``13810013``. Outside such runs
   ``一`` stays a word.
3. **Deletions**, one regular expression: invisible characters anywhere; up to three symbols/spaces inserted
   between two word characters when one of them is a CJK ideograph (``五.星@红#旗`` → ``五星红旗``) — except the
   CJK sentence punctuation ``，。！？；：、`` and line breaks, which real sentences use and which therefore stay
   hard boundaries; repeated ideographs (``傻傻傻逼`` → ``傻逼``, but an ordinary pair such as 妈妈 or 谢谢 is
   kept; lexicon terms go through the same function).

Every normalised character maps to a span of the original: the result keeps a list of segments (numpy arrays),
and :meth:`Normalized.spans` turns many normalised ``[start, end)`` into original offsets in one vectorised
lookup, so no per-character offset array is built. Three implementations give identical results (tests check
it): the reference one (``str.translate`` + two regexes) for short texts, whose fixed cost is lowest, and a
numpy one for texts of :data:`VECTOR_MIN_CHARS` or more — including every batch, since ``screen_batch`` joins
its texts with line breaks (hard boundaries, so nothing crosses from one text to the next). Where the optional
extension ``moderation/_lexfast.c`` was built (:mod:`moderation.fastpath`), its C twin of the numpy one runs
instead, for texts of every length, and so do C twins of the pinyin view's windows and pieces.

The pinyin view (:func:`pinyin_view`) and the homophone table (:func:`apply_homophones`) are separate, used by
the lexicon matcher only where they can matter.
"""

from __future__ import annotations

import pickle
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from moderation import fastpath

__all__ = [
    "HOMOPHONES",
    "Normalized",
    "PackedTable",
    "PinyinView",
    "apply_homophones",
    "char_pinyin",
    "forget_tables",
    "homophone_keys",
    "homophone_spans",
    "is_pinyin_word",
    "normalize",
    "normalize_term",
    "pinyin_view",
    "prime_tables",
    "sound_key",
    "sound_table",
    "sound_view",
    "table_state",
]

# Markers written by the translate table (never produced by NFKC of real text: they are C0 controls, which the
# table maps to themselves only for these two code points).
_DEL = "\x00"  # delete this character
_EXP = "\x01"  # this character expands to several (look it up in _EXPAND by the original character)
# What a lone surrogate (U+D800-U+DFFF, e.g. half an emoji cut by a JavaScript slice) folds to: the automata
# (ahocorasick_rs) and the classifier's tokenizer encode their input as UTF-8, which has no surrogates, so the
# normalised text must hold none. U+FFFD is not a word character, as the surrogate was not: it stays a separator.
_SURROGATE_FOLD = "\ufffd"

# CJK ideographs (BMP blocks + extension B) — the characters between which inserted symbols are removed.
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002a6df"
# Hard boundaries: real sentence punctuation and line breaks are never deleted, otherwise ordinary
# "…办法，轮到…" would read "办法轮到" and long clauses would glue into false matches.
_HARD = "\n\r\u2028\u2029，。！？；：、…「」『』“”‘’（）《》【】"
# A separator: anything that is not a word character and not a hard boundary, plus '_' and the delete marker.
_SEP = rf"(?:[^\w{_HARD}]|[_{_DEL}])"
_WORD = r"[^\W_]"

# Chinese numerals that count as digits inside a digit run.
_CN_DIGITS = {
    "零": "0", "〇": "0", "一": "1", "幺": "1", "二": "2", "三": "3", "四": "4", "五": "5",
    "六": "6", "七": "7", "八": "8", "九": "9", "壹": "1", "贰": "2", "叁": "3", "肆": "4",
    "伍": "5", "陆": "6", "柒": "7", "捌": "8", "玖": "9",
}  # fmt: skip
_DIGITISH = "0-9" + "".join(_CN_DIGITS)
# Five or more digit-like characters, optionally split by a space, dash, dot or middle dot.
_DIGIT_RUN_RE = re.compile(rf"[{_DIGITISH}](?:[ \-.·]?[{_DIGITISH}]){{4,}}")
_CN_DIGIT_RE = re.compile("[" + "".join(_CN_DIGITS) + "]")
_CN_DIGIT_TABLE = str.maketrans(_CN_DIGITS)

# Step 3 in one pass. Alternatives, tried in this order at each position:
#   1. separators between two word characters, one of them CJK (lookbehind/lookahead keep the words);
#   2. a run of invisible characters anywhere (e.g. inside a Latin word);
#   3. an expanding character;
#   4. a repeated ideograph, possibly with up to three separators, or any number of invisible characters,
#      between the repeats (group 1 is the ideograph): invisible characters go wherever they are, so the
#      repeats either side of them are neighbours, as the vectorised paths (which delete them first) see them.
# Separators between two *isolated* Latin letters ("s b", "f.u.c.k"): a single letter, then up to three
# separators, then another single letter. Words ("is bad", "www.qq.com") are never joined.
# "@" never counts here: it would glue the parts of an e-mail address such as a.b@x.com.
_SEP_NOT_AT = rf"(?:[^\w@{_HARD}]|[_{_DEL}])"
_SPACED_LATIN = rf"(?<=[a-z])(?<![a-z]{{2}}){_SEP_NOT_AT}{{1,3}}(?=[a-z](?![a-z]))"
_SPACED_LATIN_RE = re.compile(_SPACED_LATIN)
_DELETE_RE = re.compile(
    rf"{_SPACED_LATIN}"
    rf"|(?<=[{_CJK}]){_SEP}{{1,3}}(?={_WORD})"
    rf"|(?<={_WORD}){_SEP}{{1,3}}(?=[{_CJK}])"
    rf"|{_DEL}+"
    rf"|{_EXP}"
    rf"|([{_CJK}])(?:(?:{_SEP}{{0,3}}|{_DEL}+)\1)+"
)


def _manual_folds() -> dict[str, str]:
    """Characters NFKC leaves alone but that are common disguises for letters and digits."""
    m: dict[str, str] = {}
    # Dingbat/negative circled digits: ❶-❿, ➀-➉, ➊-➓ (1..10); ⓫-⓴ (11..20); ⓵-⓾ (1..10); ⓿ (0).
    for base in (0x2776, 0x2780, 0x278A, 0x24F5):
        for i in range(10):
            m[chr(base + i)] = str(i + 1) if i < 9 else "10"
    for i in range(10):
        m[chr(0x24EB + i)] = str(11 + i)
    m["⓿"] = "0"
    m["🄌"] = "0"
    # Negative circled (🅐), negative squared (🅰) letters and regional indicators (🇦): A..Z.
    for base in (0x1F150, 0x1F170, 0x1F1E6):
        for i in range(26):
            m[chr(base + i)] = chr(ord("a") + i)
    # Small capitals and a few IPA look-alikes.
    small_caps = "ᴀʙᴄᴅᴇꜰɢʜɪᴊᴋʟᴍɴᴏᴘǫʀꜱᴛᴜᴠᴡxʏᴢ"
    for i, ch in enumerate(small_caps):
        if ch != "x":
            m[ch] = chr(ord("a") + i)
    # Cyrillic and Greek letters that render like Latin ones (after lower-casing).
    for src, dst in zip("аеорсухкмтвнітѕјԁɡ", "aeopcyxkmtbhitsjdg", strict=True):
        m[src] = dst
    for src, dst in zip("αβεικνορτυχ", "abeiknoptux", strict=True):
        m[src] = dst
    # The commonest single-character stand-in for 操 (the grass radical).
    m["艹"] = "操"
    return m


_MANUAL = _manual_folds()

# Ideographs whose doubling is an ordinary word (妈妈, 谢谢, 看看...): a pair of them is kept, otherwise
# "你妈妈的手" would read "你妈的手". Three or more in a row are still collapsed.
_DUP_OK = frozenset(
    "妈爸哥姐弟妹爷奶婆公叔姨舅伯宝谢看想走说试听等天年人家个处时刚常渐慢轻悄好多大小高红绿白黑蓝满深早"
    "明偷星点亲乖静匆往默纷层步条样事声句件块片张次回遍歇聊问"
)

# Full-width punctuation kept as it is: it is a hard boundary (see _HARD) and NFKC would turn it into ASCII.
_KEEP_FULLWIDTH = set("，！？；：（）")


# Tables handed over by :func:`prime_tables` (read from the lexicon cache) instead of being rebuilt: building
# them (OpenCC over every ideograph, pypinyin's dictionary, the lookup arrays) is most of a cold start.
_PRIMED: dict[str, Any] = {}
_PRIMEABLE = ("_tables", "_vector_tables", "_pinyin_table", "_pinyin_arrays", "_sound_lut")


#: Tables that screening does not read once a lexicon is compiled: the pinyin of each ideograph (read when
#: terms are compiled: an organisation's list, the disguise generator) and the numpy twin of the compiled
#: pinyin view (read only where the C extension is absent). :func:`table_state` ``(packed=True)`` pickles each
#: on its own (:class:`PackedTable`), so a process that loads the lexicon cache unpickles them on first use
#: instead of holding ~12 MB of Python objects (dicts of 40-70k entries) it never reads.
_PACKED = ("_pinyin_table", "_pinyin_arrays")


class PackedTable:
    """A table kept as its own pickle until first use (:func:`prime_tables` takes it like the table itself).

    Pickled with protocol 5 and a ``buffer_callback`` (the lexicon cache), the bytes travel out of band, so
    a reader that passes memory-mapped buffers keeps them as file pages, not as a copy.
    """

    __slots__ = ("data",)

    def __init__(self, data: bytes | memoryview) -> None:
        self.data = data

    @classmethod
    def of(cls, value: object) -> PackedTable:
        """``value`` pickled (highest protocol)."""
        return cls(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))

    def unpack(self) -> Any:
        """The table itself (a new object on each call)."""
        return pickle.loads(self.data)  # noqa: S301 - our own bytes, from our own cache file

    def __reduce_ex__(self, protocol: Any) -> tuple[type[PackedTable], tuple[object]]:
        data = pickle.PickleBuffer(self.data) if int(protocol) >= 5 else bytes(self.data)
        return (PackedTable, (data,))


def _primed(name: str) -> Any:
    """The table primed as ``name`` (unpickled now if it came packed), removed from :data:`_PRIMED`; ``None``
    when there is none (then it is built). One ``pop``: two threads asking at once get it once, and the
    other builds it (the same table, as lru_cache would have it when both miss)."""
    value = _PRIMED.pop(name, None)
    return value.unpack() if isinstance(value, PackedTable) else value


def table_state(*, packed: bool = False) -> dict[str, Any]:
    """Every lookup table the normaliser and its views build, for :func:`prime_tables` in another process;
    ``packed``: the tables of :data:`_PACKED` as :class:`PackedTable` (what the lexicon cache stores)."""
    state = {name: globals()[name]() for name in _PRIMEABLE}
    if packed:
        state.update({name: PackedTable.of(state[name]) for name in _PACKED})
    return state


def forget_tables() -> None:
    """Drop every table this process holds or was primed with: the next use builds it from the sources."""
    _PRIMED.clear()
    for name in _PRIMEABLE:
        globals()[name].cache_clear()
    for derived in _DERIVED:
        derived.cache_clear()


def prime_tables(state: dict[str, Any], *, replace: bool = False) -> None:
    """Use ``state`` (from :func:`table_state` of the same code version) instead of building the tables.

    Tables already built in this process are kept, unless ``replace``: then they are dropped for those of
    ``state`` (the process that compiled the lexicon cache adopts the memory-mapped tables it just wrote
    instead of keeping its own ~50 MB of them), with everything derived from them. The caller is responsible
    for the version match (the lexicon cache keys its file by a hash of this module's source).
    """
    for name in _PRIMEABLE:
        if name in state and (replace or globals()[name].cache_info().currsize == 0):
            _PRIMED[name] = state[name]
            if replace:
                globals()[name].cache_clear()
    if replace:
        for derived in _DERIVED:
            derived.cache_clear()


@lru_cache(maxsize=1)
def _tables() -> tuple[dict[int, str], dict[str, str]]:
    """Build (translate table, expansion map) once per process (~0.3 s)."""
    if (primed := _primed("_tables")) is not None:
        return primed  # type: ignore[no-any-return]
    import opencc  # local: only the table build needs it

    table: dict[int, str] = {}
    expand: dict[str, str] = {}

    def fold(ch: str) -> str:
        if ch in _MANUAL:
            return _MANUAL[ch]
        if ch in _KEEP_FULLWIDTH:
            return ch
        out = unicodedata.normalize("NFKC", ch).lower()
        # Parenthesised and full-stop forms (⒦ ⑴ ⒈) are disguises for the bare letter/number.
        if len(out) >= 3 and out[0] == "(" and out[-1] == ")" and out[1:-1].isalnum():
            out = out[1:-1]
        elif len(out) >= 2 and out[-1] == "." and out[:-1].isdigit() and not ch.isascii():
            out = out[:-1]
        return "".join(_MANUAL.get(c, c) for c in out)

    ranges = [(0x00A0, 0x3400), (0xA000, 0xF900), (0xFB00, 0x10000), (0x1D400, 0x1D800), (0x1F100, 0x1F200)]
    for lo, hi in ranges:
        for cp in range(lo, hi):
            ch = chr(cp)
            cat = unicodedata.category(ch)
            if cat in ("Cf", "Mn", "Me") or 0xFE00 <= cp <= 0xFE0F:
                table[cp] = _DEL
                continue
            out = fold(ch)
            if out == ch:
                continue
            if len(out) == 1:
                table[cp] = out
            elif any(c.isalnum() for c in out):
                table[cp] = _EXP
                expand[ch] = out
            # else: a punctuation/spacing expansion (… -> "...", ´ -> " ́") changes nothing a term could match;
            # the character stays as it is, and texts with "…" keep the fast 1:1 paths.
    for ch, out in _MANUAL.items():
        if len(out) == 1:
            table[ord(ch)] = out
        else:
            table[ord(ch)] = _EXP
            expand[ch] = out
    # ASCII: upper case only (control characters other than our markers stay: they are separators).
    for cp in range(ord("A"), ord("Z") + 1):
        table[cp] = chr(cp + 32)
    # Invisible characters outside the scanned ranges: variation selectors supplement, tags.
    for cp in list(range(0xE0000, 0xE0080)) + list(range(0xE0100, 0xE01F0)):
        table[cp] = _DEL
    for cp in range(0xD800, 0xE000):
        table[cp] = _SURROGATE_FOLD
    # Traditional -> simplified, per character (OpenCC converts a newline-separated list in one call).
    cjk = [chr(c) for r in ((0x3400, 0x4DC0), (0x4E00, 0xA000), (0xF900, 0xFB00)) for c in range(*r)]
    cjk_folded = [table.get(ord(c), c) for c in cjk]  # compatibility ideographs fold to unified first
    converted = opencc.OpenCC("t2s").convert("\n".join(cjk_folded)).split("\n")
    if len(converted) == len(cjk):
        for src, folded, simp in zip(cjk, cjk_folded, converted, strict=True):
            if len(simp) == 1 and simp != src:
                table[ord(src)] = _MANUAL.get(simp, simp)
            elif folded != src and len(folded) == 1:
                table[ord(src)] = folded
    return table, expand


@dataclass(frozen=True, slots=True, eq=False)
class Normalized:
    """A normalised text and the way back to the original.

    The map is a list of *segments*, as four parallel numpy arrays: from ``seg_norm[k]`` up to the next
    segment's start, normalised characters map linearly onto ``seg_orig[k]..`` when ``seg_linear[k]``, or all
    onto the whole ``[seg_orig[k], seg_end[k])`` span when a single original character expanded into several.
    ``seg_norm is None`` means the identity map. Arrays (not tuples) so that mapping thousands of hits back is
    one vectorised lookup (:meth:`spans`).
    """

    text: str
    original: str
    seg_norm: Any = None
    seg_orig: Any = None
    seg_end: Any = None
    seg_linear: Any = None
    #: The normalised text as a uint32 numpy array of code points, when the normaliser already had it (the
    #: matchers need it; :meth:`code_points` computes it otherwise).
    cps: Any = None

    @classmethod
    def from_segments(cls, text: str, original: str, segments: list[tuple[int, int, int, bool]]) -> Normalized:
        """Build from ``(norm_start, orig_start, orig_end, linear)`` tuples (the reference path's output)."""
        import numpy as np

        if not segments:
            return cls(text, original)
        cols = list(zip(*segments, strict=True))
        return cls(
            text,
            original,
            np.asarray(cols[0], dtype=np.int64),
            np.asarray(cols[1], dtype=np.int64),
            np.asarray(cols[2], dtype=np.int64),
            np.asarray(cols[3], dtype=bool),
        )

    @property
    def segments(self) -> list[tuple[int, int, int, bool]]:
        """The map as ``(norm_start, orig_start, orig_end, linear)`` tuples (empty for the identity)."""
        if self.seg_norm is None:
            return []
        return list(
            zip(
                self.seg_norm.tolist(), self.seg_orig.tolist(), self.seg_end.tolist(), self.seg_linear.tolist(),
                strict=True,
            )
        )  # fmt: skip

    def orig_index(self, i: int) -> tuple[int, int]:
        """Original span ``[a, b)`` of normalised character ``i``."""
        (a,), (b,) = self._map([i], [i + 1])
        return a, b

    def span(self, start: int, end: int) -> tuple[int, int]:
        """Original ``[a, b)`` covering normalised ``[start, end)`` (``end > start``).

        Deleted separators *inside* the match are covered too (``五.星@红#旗`` maps to all seven characters).
        """
        (a,), (b,) = self._map([start], [end])
        return a, b

    def spans(self, starts: list[int], ends: list[int]) -> list[tuple[int, int]]:
        """:meth:`span` for many matches at once."""
        a, b = self._map(starts, ends)
        return list(zip(a, b, strict=True))

    def _map(self, starts: list[int], ends: list[int]) -> tuple[list[int], list[int]]:
        if self.seg_norm is None:
            return list(starts), list(ends)
        import numpy as np

        s = np.asarray(starts, dtype=np.int64)
        last = np.asarray(ends, dtype=np.int64) - 1
        k0 = np.searchsorted(self.seg_norm, s, side="right") - 1
        k1 = np.searchsorted(self.seg_norm, last, side="right") - 1
        a = np.where(self.seg_linear[k0], self.seg_orig[k0] + (s - self.seg_norm[k0]), self.seg_orig[k0])
        b = np.where(self.seg_linear[k1], self.seg_orig[k1] + (last - self.seg_norm[k1]) + 1, self.seg_end[k1])
        return a.tolist(), b.tolist()

    def norm_indices(self, origs: list[int]) -> list[int]:
        """Normalised indices of original characters ``origs``, each of which must have been kept.

        Used to cut a normalised batch back into its texts at the line breaks that join them.
        """
        if self.seg_norm is None:
            return list(origs)
        import numpy as np

        o = np.asarray(origs, dtype=np.int64)
        k = np.searchsorted(self.seg_orig, o, side="right") - 1
        return np.where(self.seg_linear[k], self.seg_norm[k] + (o - self.seg_orig[k]), self.seg_norm[k]).tolist()

    def code_points(self) -> Any:
        """The normalised text as a uint32 numpy array (computed once, then kept)."""
        if self.cps is None:
            import numpy as np

            arr = np.frombuffer(self.text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
            object.__setattr__(self, "cps", arr)  # a cache, not state: the frozen fields are unchanged
        return self.cps

    @property
    def identity(self) -> bool:
        """True when no character was deleted or expanded (offsets are the same in both texts)."""
        return self.seg_norm is None


def _digit_runs(m: str) -> str:
    """Replace Chinese numerals by ASCII digits inside runs of >= 5 digit-like characters (same length)."""
    if not _CN_DIGIT_RE.search(m):
        return m
    out: list[str] = []
    last = 0
    for match in _DIGIT_RUN_RE.finditer(m):
        run = match.group()
        if _CN_DIGIT_RE.search(run):
            out.append(m[last : match.start()])
            out.append(run.translate(_CN_DIGIT_TABLE))
            last = match.end()
    if not out:
        return m
    out.append(m[last:])
    return "".join(out)


#: Texts at least this long take the vectorised (numpy) path; shorter ones the ``str.translate`` + regex path,
#: whose fixed cost is lower. Both give the same result (tests/unit/test_moderation_normalize.py checks it).
VECTOR_MIN_CHARS = 400


def normalize(text: str) -> Normalized:
    """Normalise ``text`` for matching; see the module docstring for what is undone."""
    if text.isascii():
        # ASCII fast path: only case (no CJK → nothing to delete, no folding beyond lower case), unless
        # isolated letters are spaced out ("s b"), which the reference path joins.
        m = text.lower()
        if "\x00" not in m and "\x01" not in m and not _SPACED_LATIN_RE.search(m):
            return Normalized(m, text)
    elif (lib := fastpath.compiled()) is not None:
        # The C twin of _normalize_vector: its fixed cost is below the reference path's, so every length.
        out = _normalize_compiled(lib, text)
        if out is not None:
            return out
    elif len(text) >= VECTOR_MIN_CHARS:
        out = _normalize_vector(text)
        if out is not None:
            return out
    return _normalize_str(text)


@lru_cache(maxsize=4)
def _compiled_tables_set(lib: Any) -> bool:
    """Hand the vectorised path's lookup tables to the extension ``lib``, once per process (and build)."""
    t = _vector_tables()
    lib.set_norm_tables(t["fold"], t["flags"], t["cn_to_ascii"], t["run_sep"], t["dup_ok"])
    return True


def _normalize_compiled(lib: Any, text: str) -> Normalized | None:
    """:func:`_normalize_vector` computed by ``moderation/_lexfast.c``; ``None`` where that returns ``None``."""
    import numpy as np

    _compiled_tables_set(lib)
    out = lib.normalize(text)
    if out is None:
        return None
    norm_text, cps, segs = out
    arr = np.frombuffer(cps, dtype=np.uint32)
    if segs is None:
        return Normalized(norm_text, text, cps=arr)
    sn, so, se = (np.frombuffer(b, dtype=np.int64) for b in segs)
    return Normalized(norm_text, text, sn, so, se, np.ones(len(sn), dtype=bool), arr)


def _normalize_str(text: str) -> Normalized:
    """The reference implementation: ``str.translate``, one digit-run regex, one deletion regex."""
    table, expand = _tables()
    m = text.translate(table)
    m = _digit_runs(m)
    pieces: list[str] = []
    segments: list[tuple[int, int, int, bool]] = []
    last = 0  # original/mapped index (the mapped text has the same length as the original)
    npos = 0  # position in the normalised output
    for match in _DELETE_RE.finditer(m):
        s, e = match.span()
        rep = match.group(1)
        if rep is not None:
            if rep in _DUP_OK and e - s == 2:
                continue  # an ordinary doubled word: nothing to delete
            s += 1  # keep the first of the repeated ideographs
        if s > last:
            pieces.append(m[last:s])
            segments.append((npos, last, s, True))
            npos += s - last
        if m[s] == _EXP and e - s == 1:
            out = expand.get(text[s], "")
            if out:
                pieces.append(out)
                segments.append((npos, s, s + 1, False))
                npos += len(out)
        last = e
    if not segments and last == 0:
        return Normalized(m, text)
    if last < len(m):
        pieces.append(m[last:])
        segments.append((npos, last, len(m), True))
    return Normalized.from_segments("".join(pieces), text, segments)


# Character flags of the FOLDED character, one uint8 lookup per character for the vectorised path.
_F_CJK = 1  # a CJK ideograph
_F_SEP = 2  # a separator (not a word character, not a hard boundary; also the delete marker)
_F_HARD = 4  # a hard boundary (sentence punctuation, line breaks)
_F_CN = 8  # a Chinese numeral (becomes a digit inside a digit run)
_F_DIGIT = 16  # digit-like (ASCII digit or Chinese numeral)
_F_EXP = 32  # the expansion marker


@lru_cache(maxsize=1)
def _vector_tables() -> dict[str, Any]:
    """Lookup arrays for the vectorised path, built once (~0.2 s, ~6 MB)."""
    if (primed := _primed("_vector_tables")) is not None:
        return primed  # type: ignore[no-any-return]
    import numpy as np

    table, _ = _tables()
    size = 0x30000  # BMP + SMP + CJK extension B: every class; above it only word / separator (see below)
    fold = np.arange(0x110000, dtype=np.uint32)
    for cp, out in table.items():
        if len(out) == 1:
            fold[cp] = ord(out)  # markers included: _DEL -> 0, _EXP -> 1
    flags = np.zeros(0x110000, dtype=np.uint8)
    cjk = re.compile(rf"[{_CJK}]")
    for cp in range(size):
        ch = chr(cp)
        if ch in _HARD:
            flags[cp] = _F_HARD
        elif cjk.match(ch):
            flags[cp] = _F_CJK
        elif not ch.isalnum() or ch == "_":
            flags[cp] = _F_SEP
    # Above it no character is an ideograph (_CJK) or a hard boundary, but the unassigned ones and the private
    # use planes are not word characters either: separators, as the reference path's regexes see them.
    word = np.fromiter((chr(cp).isalnum() for cp in range(size, 0x110000)), dtype=bool, count=0x110000 - size)
    flags[size:][~word] = _F_SEP
    flags[0] = _F_SEP  # the delete marker is a separator too
    flags[1] = _F_EXP
    for ch in "0123456789":
        flags[ord(ch)] |= _F_DIGIT
    cn_to_ascii = np.arange(0x110000, dtype=np.uint32)
    for ch, d in _CN_DIGITS.items():
        cn_to_ascii[ord(ch)] = ord(d)
        flags[ord(ch)] |= _F_CN | _F_DIGIT
    run_sep = np.zeros(0x110000, dtype=bool)
    for ch in " -.·":
        run_sep[ord(ch)] = True
    dup_ok = np.zeros(0x110000, dtype=bool)
    for ch in _DUP_OK:
        dup_ok[ord(ch)] = True
    return {"fold": fold, "flags": flags, "cn_to_ascii": cn_to_ascii, "run_sep": run_sep, "dup_ok": dup_ok}


def _normalize_vector(text: str) -> Normalized | None:
    """Vectorised twin of :func:`_normalize_str` for long texts; ``None`` means "use the reference path"
    (a character that expands). Lone surrogates pass through UTF-32 (``surrogatepass``) and fold like any
    other character (to ``_SURROGATE_FOLD``).

    Two lookups per character (fold, flags) and a handful of whole-array passes; everything else works on
    the sparse positions those passes find (separators, digits, repeats), so clean text costs a few
    nanoseconds per character.
    """
    import numpy as np

    t = _vector_tables()
    arr = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    m = np.take(t["fold"], arr)  # np.take: about twice as fast as fancy indexing for a table lookup
    c = np.take(t["flags"], m)
    present = int(np.bitwise_or.reduce(c)) if len(c) else 0
    if present & _F_EXP:
        return None  # an expanding character: the reference path handles the 1:n offsets
    n = len(m)
    # One pass finds the only positions the sparse steps below need: digits and separators.
    sparse = np.flatnonzero(c & (_F_DIGIT | _F_SEP)) if present & (_F_CN | _F_SEP) else np.zeros(0, np.int64)
    # Step 2: Chinese numerals inside runs of >= 5 digit-like characters (single separators allowed).
    if present & _F_CN:
        idx = sparse[(c[sparse] & _F_DIGIT) != 0]
        if len(idx) >= 5:
            gaps = np.diff(idx)
            link = (gaps == 1) | ((gaps == 2) & t["run_sep"][m[idx[:-1] + 1]])
            run_id = np.cumsum(np.concatenate(([True], ~link))) - 1
            cn = (c[idx] & _F_CN) != 0
            run_len = np.bincount(run_id)
            run_cn = np.bincount(run_id, weights=cn) > 0
            sel = idx[(run_len[run_id] >= 5) & run_cn[run_id] & cn]
            if len(sel):
                m[sel] = t["cn_to_ascii"][m[sel]]
                c[sel] = t["flags"][m[sel]]
    deleted: list[Any] = []
    gone_runs = None  # (first, end) of each run of separators deleted in step 3a
    # Step 3a: separator runs of <= 3 between two word characters, one of them an ideograph.
    if present & _F_SEP:
        sidx = sparse[(c[sparse] & _F_SEP) != 0]
        new_run = np.concatenate(([True], np.diff(sidx) != 1))
        run_of = np.cumsum(new_run) - 1
        starts = sidx[new_run]
        ends = np.concatenate((sidx[np.flatnonzero(new_run)[1:] - 1], sidx[-1:])) + 1
        prev = starts - 1
        ok = (prev >= 0) & (ends < n) & (ends - starts <= 3)
        prev_c = np.where(ok, prev, 0)
        next_c = np.where(ok, np.minimum(ends, n - 1), 0)
        cp, cn_ = c[prev_c], c[next_c]
        nonword = _F_SEP | _F_HARD
        between_words = ((cp & nonword) == 0) & ((cn_ & nonword) == 0) & (((cp | cn_) & _F_CJK) != 0)
        # ... or between two isolated Latin letters ("s b"): letter before and after, no letter beyond them.
        mp, mn = m[prev_c], m[next_c]
        before2 = m[np.where(prev_c >= 1, prev_c - 1, 0)]
        after2 = m[np.minimum(next_c + 1, n - 1)]
        isolated = (
            (mp >= 97) & (mp <= 122) & ((prev_c == 0) | ~((before2 >= 97) & (before2 <= 122)))
            & (mn >= 97) & (mn <= 122) & ((next_c + 1 >= n) | ~((after2 >= 97) & (after2 <= 122)))
        )  # fmt: skip
        at = m[sidx] == ord("@")
        if at.any():  # no "@" inside the run (e-mail addresses)
            isolated &= np.bincount(run_of, weights=at, minlength=len(starts)) == 0
        ok &= between_words | isolated
        gone = ok[run_of] | (m[sidx] == 0)  # the delete marker goes wherever it is
        if gone.any():
            deleted.append(sidx[gone])
            # Maximal runs of deleted positions: the characters either side of one become neighbours.
            g = sidx[gone]
            brk = np.concatenate(([True], np.diff(g) != 1))
            gone_runs = (g[brk], np.concatenate((g[np.flatnonzero(brk)[1:] - 1], g[-1:])) + 1)
    # Step 3b: repeated ideographs among what is left. A repeat is a pair (p, q) of neighbours in the kept
    # text with the same ideograph: q = p + 1, or p and q either side of a deleted run (傻.傻). Only
    # separators were deleted so far, and they are never ideographs, so both kinds are found sparsely.
    q = np.flatnonzero(m[1:] == m[:-1]) + 1
    p = q - 1
    if gone_runs is not None:
        gs, ge = gone_runs
        inner = (gs > 0) & (ge < n)
        gs, ge = gs[inner] - 1, ge[inner]
        same = m[gs] == m[ge]
        if same.any():
            p, q = np.concatenate((p, gs[same])), np.concatenate((q, ge[same]))
            order = np.argsort(q, kind="stable")
            p, q = p[order], q[order]
    if len(q):
        cjk_rep = (c[q] & _F_CJK) != 0
        p, q = p[cjk_rep], q[cjk_rep]
    if len(q):
        # Runs of repeats: a pair continues the run of the previous pair when it starts where that one ended.
        new_run = np.concatenate(([True], p[1:] != q[:-1]))
        run_id = np.cumsum(new_run) - 1
        run_len = np.bincount(run_id) + 1  # the first character of the run is not a repeat
        first = p[new_run]
        exempt = (run_len[run_id] == 2) & t["dup_ok"][m[first[run_id]]] & (q - p == 1)
        drop = q[~exempt]
        if len(drop):
            deleted.append(drop)
    if not deleted:
        if np.array_equal(m, arr):
            return Normalized(text, text, cps=arr)  # nothing folded either: no decode needed
        return Normalized(m.tobytes().decode("utf-32-le"), text, cps=m)
    didx = np.unique(np.concatenate(deleted)) if len(deleted) > 1 else deleted[0]
    kept = np.delete(m, didx)
    out = kept.tobytes().decode("utf-32-le")
    bounds = np.concatenate(([-1], didx, [n]))
    seg_start = bounds[:-1] + 1
    seg_end = bounds[1:]
    nonempty = seg_end > seg_start
    seg_start, seg_end = seg_start[nonempty], seg_end[nonempty]
    npos = np.concatenate(([0], np.cumsum(seg_end - seg_start)[:-1])).astype(np.int64)
    return Normalized(
        out, text, npos, seg_start.astype(np.int64), seg_end.astype(np.int64), np.ones(len(npos), bool), kept
    )


def normalize_term(term: str) -> str:
    """Normalise a lexicon term exactly as text is normalised (so both sides meet in the same form)."""
    return normalize(term.strip()).text


# --------------------------------------------------------------------------------------------------------------
# Homophones: the commonest same-length substitutions, mapped back to the canonical spelling. Applied to the
# normalised text as a second view only when one of them occurs (so clean text pays one regex scan).
HOMOPHONES: dict[str, str] = {
    # Only spellings that are not ordinary words themselves: 菠菜 (spinach), 烧饼, 几把 (几把椅子), 你马 (你马上),
    # 我草 (我草拟), 威信 and 尼玛 (a common Tibetan name) were left out after checking them against plain text.
    "草泥马": "操你妈", "曹尼玛": "操你妈", "草你妈": "操你妈", "艹你妈": "操你妈", "操你吗": "操你妈",
    "卧槽": "我操", "沃草": "我操", "泥马": "你妈", "特么": "他妈", "他喵的": "他妈的", "泥煤": "你妹",
    "尼玛币": "你妈逼", "尼玛的": "你妈的", "沙比": "傻逼", "傻比": "傻逼", "煞笔": "傻逼", "傻笔": "傻逼",
    "煞逼": "傻逼", "傻b": "傻逼", "傻吊": "傻屌", "骚b": "骚逼", "妈卖批": "妈卖逼", "贱比": "贱逼",
    "狗币": "狗逼", "鸡吧": "鸡巴", "jb": "鸡巴", "发轮功": "法轮功", "法仑功": "法轮功", "珐轮功": "法轮功",
    "菠菜网": "博彩网", "博菜": "博彩", "六合采": "六合彩", "薇信": "微信", "徽信": "微信", "微芯": "微信",
    "v信": "微信", "胃信": "微信",
}  # fmt: skip


@lru_cache(maxsize=1)
def _homophones() -> tuple[dict[str, str], dict[str, list[str]], re.Pattern[str]]:
    """Normalised homophone → canonical map (same length only), keys by first character (longest first), and
    a one-character-class regex that finds candidate positions (a plain class scans at C speed; an alternation
    with lookarounds did not)."""
    table: dict[str, str] = {}
    for k, v in HOMOPHONES.items():
        nk, nv = normalize_term(k), normalize_term(v)
        # Identity entries document the canonical form; length changes would break the offset map.
        if nk != nv and len(nk) == len(nv):
            table[nk] = nv
    by_first: dict[str, list[str]] = {}
    for key in sorted(table, key=len, reverse=True):
        by_first.setdefault(key[0], []).append(key)
    first = re.compile("[" + "".join(re.escape(c) for c in sorted(by_first)) + "]")
    return table, by_first, first


def _is_ascii_alnum(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


def homophone_keys() -> list[str]:
    """The normalised homophone spellings :func:`apply_homophones` replaces (for a matcher's pre-check)."""
    return sorted(_homophones()[0])


def homophone_spans(norm_text: str, candidates: Iterable[int] | None = None) -> list[tuple[int, int]]:
    """Normalised spans where :func:`apply_homophones` changes the text (so a matcher can look only there).

    Leftmost-longest, non-overlapping. A key with a Latin edge needs a word boundary there ("jb" must not fire
    inside "jboss"). ``candidates`` (ascending positions) may name the only places where a spelling can start,
    as found by a matcher's pre-check; the result is the same as without them.
    """
    _, by_first, first = _homophones()
    spans: list[tuple[int, int]] = []
    end = 0
    n = len(norm_text)
    starts = (m.start() for m in first.finditer(norm_text)) if candidates is None else candidates
    for i in starts:
        if i < end:
            continue
        for key in by_first.get(norm_text[i], ()):
            j = i + len(key)
            if not norm_text.startswith(key, i):
                continue
            if _is_ascii_alnum(key[0]) and i > 0 and _is_ascii_alnum(norm_text[i - 1]):
                continue
            if _is_ascii_alnum(key[-1]) and j < n and _is_ascii_alnum(norm_text[j]):
                continue
            spans.append((i, j))
            end = j
            break
    return spans


def apply_homophones(norm_text: str, spans: list[tuple[int, int]] | None = None) -> str | None:
    """The normalised text with homophone spellings replaced by canonical ones (same length), or ``None``.

    ``None`` means no homophone occurred, so the caller can skip a second matching pass. ``spans`` may pass
    the result of :func:`homophone_spans` when the caller already has it.
    """
    if spans is None:
        spans = homophone_spans(norm_text)
    if not spans:
        return None
    table = _homophones()[0]
    out: list[str] = []
    last = 0
    for s, e in spans:
        out.append(norm_text[last:s])
        out.append(table[norm_text[s:e]])
        last = e
    out.append(norm_text[last:])
    return "".join(out)


# --------------------------------------------------------------------------------------------------------------
# Pinyin view, for terms written partly or wholly in pinyin (sha逼, cao你ma, shabi).
# Windows around Latin letters: up to _PINYIN_PAD ideographs either side (lexicon terms are short), so a long
# Chinese sentence with one Latin word costs a few characters of pinyin, not the whole sentence.
_LATIN_RUN_RE = re.compile(r"[a-z]+")
_CJK_CHAR_RE = re.compile(rf"[{_CJK}]")
_PINYIN_PAD = 8


def _latin_windows(text: str) -> list[tuple[int, int]]:
    """Merged ``[start, end)`` windows: a Latin run plus the ideographs touching it (at most _PINYIN_PAD)."""
    windows: list[tuple[int, int]] = []
    is_cjk = _CJK_CHAR_RE.match
    for m in _LATIN_RUN_RE.finditer(text):
        s, e = m.span()
        a = s
        while a > 0 and s - a < _PINYIN_PAD and is_cjk(text, a - 1):
            a -= 1
        b = e
        while b < len(text) and b - e < _PINYIN_PAD and is_cjk(text, b):
            b += 1
        if a == s and b == e:
            continue  # no ideograph touches it: pure Latin is matched by the main automaton
        if windows and a <= windows[-1][1]:
            windows[-1] = (windows[-1][0], b)
        else:
            windows.append((a, b))
    return windows


_HAS_CJK_RE = re.compile(rf"[{_CJK}]")
_HAS_LATIN_RE = re.compile(r"[a-z]")


@lru_cache(maxsize=1)
def _pinyin_table() -> dict[str, str]:
    """Ideograph → toneless pinyin of its most frequent reading (from pypinyin's single-character dict)."""
    if (primed := _primed("_pinyin_table")) is not None:
        return primed  # type: ignore[no-any-return]
    data = _pypinyin_data()
    if data is None:
        return _pinyin_table_from_package()
    readings, symbols = data
    # pypinyin's Style.NORMAL (style._utils.replace_symbol_to_no_symbol): each one-character tone symbol by its
    # toneless letter and tone digit, then the longer symbols, then every digit removed.
    one = re.compile("[" + re.escape("".join(k for k in symbols if len(k) == 1)) + "]")
    longer = [(k, v) for k, v in symbols.items() if len(k) > 1]
    out: dict[str, str] = {}
    for cp, text in readings.items():  # the file's order, which is pypinyin's (the sound codes follow it)
        value = one.sub(lambda m: symbols[m.group(0)], text.split(",")[0])
        for k, v in longer:
            value = value.replace(k, v)
        out[chr(int(cp))] = _DIGIT_RE.sub("", value).replace("ü", "v")
    return out


_DIGIT_RE = re.compile(r"\d")


def _pypinyin_data() -> tuple[dict[str, str], dict[str, str]] | None:
    """pypinyin's single-character readings and tone-symbol table, read from its data files without importing
    the package (whose ``__init__`` loads the 47k-phrase dictionary: ~55 MB that the process that compiles
    the lexicon would keep for good); ``None`` where the installed version lays its data out otherwise."""
    import importlib.util
    import json
    from pathlib import Path

    spec = importlib.util.find_spec("pypinyin")  # a top-level package: found, not imported
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations)))
    try:
        readings = json.loads((root / "pinyin_dict.json").read_text(encoding="utf-8"))
        symbol_spec = importlib.util.spec_from_file_location(
            "_moderation_pypinyin_symbols", root / "phonetic_symbol.py"
        )
        if symbol_spec is None or symbol_spec.loader is None:
            return None
        module = importlib.util.module_from_spec(symbol_spec)
        symbol_spec.loader.exec_module(module)  # a data module: one dict literal
        symbols = dict(module.phonetic_symbol)
    except (OSError, ValueError, AttributeError, SyntaxError):
        return None
    if not isinstance(readings, dict) or not all(isinstance(v, str) for v in symbols.values()):
        return None
    return readings, symbols


def _pinyin_table_from_package() -> dict[str, str]:
    """:func:`_pinyin_table` through pypinyin's API (the reference the data-file path is tested against)."""
    from pypinyin import Style, pinyin_dict
    from pypinyin.style import convert

    out: dict[str, str] = {}
    for cp, readings in pinyin_dict.pinyin_dict.items():
        first = readings.split(",")[0]
        out[chr(cp)] = convert(first, Style.NORMAL, strict=False).replace("ü", "v")
    return out


def char_pinyin(ch: str) -> str:
    """Toneless pinyin of one ideograph (most frequent reading), or ``""``."""
    return _pinyin_table().get(ch, "")


@lru_cache(maxsize=1)
def _syllables() -> frozenset[str]:
    return frozenset(_pinyin_table().values())


@lru_cache(maxsize=4096)
def is_pinyin_word(letters: str) -> bool:
    """True if ``letters`` (lower-case a-z) splits into toneless pinyin syllables (``shuo``, ``nihao``)."""
    syl = _syllables()
    n = len(letters)
    ok = [True] + [False] * n  # ok[i]: letters[:i] splits into syllables
    for i in range(1, n + 1):
        ok[i] = any(ok[j] and letters[j:i] in syl for j in range(max(0, i - 6), i))
    return n > 0 and ok[n]


def term_pinyin(term: str) -> str | None:
    """Full toneless pinyin of a normalised term made of ideographs/letters, or ``None`` if a char has none."""
    table = _pinyin_table()
    parts: list[str] = []
    for ch in term:
        if "a" <= ch <= "z":
            parts.append(ch)
        else:
            py = table.get(ch)
            if not py:
                return None
            parts.append(py)
    return "".join(parts)


@lru_cache(maxsize=1)
def _pinyin_arrays() -> tuple[dict[int, str], Any, Any]:
    """``str.translate`` table ideograph → pinyin, the pinyin length of every code point (1 for others), and
    which code points are ideographs with a reading."""
    if (primed := _primed("_pinyin_arrays")) is not None:
        return primed  # type: ignore[no-any-return]
    import numpy as np

    table = _pinyin_table()
    trans = {ord(ch): py for ch, py in table.items()}
    lengths = np.ones(0x110000, dtype=np.int64)
    has_reading = np.zeros(0x110000, dtype=bool)
    cjk = re.compile(rf"[{_CJK}]")
    for cp in range(0x3400, 0x30000):
        if cjk.match(chr(cp)) and cp not in trans:
            trans[cp] = ""  # ideographs without a reading vanish from the view
    # Lengths must agree with the translate table for every entry, including pypinyin's characters outside the
    # blocks above (extensions C-F): one disagreement would shift every later offset of the view.
    for cp, py in trans.items():
        lengths[cp] = len(py)
        has_reading[cp] = bool(py)
    return trans, lengths, has_reading


@dataclass(frozen=True, slots=True, eq=False)
class PinyinView:
    """Pinyin of the windows around Latin letters that touch ideographs.

    The view is a sequence of *pieces*: one per source character (its pinyin syllable, or the letter itself),
    plus a single-space piece after each window so no match spans two windows. ``bounds[k]`` is where piece
    ``k`` starts in ``text``; ``src[k]`` is the normalised index it came from (-1 for a window break);
    ``latin[k]`` tells whether it was typed as a letter. Built with numpy; looked up per match with a bisect.
    """

    text: str
    bounds: Any
    src: Any
    latin: Any

    def piece_at(self, pos: int) -> int:
        """Index of the (last) piece that starts exactly at ``pos``, or -1 if ``pos`` falls inside a piece."""
        import numpy as np

        k = int(np.searchsorted(self.bounds, pos, side="right")) - 1
        return k if k >= 0 and int(self.bounds[k]) == pos else -1

    def source_span(self, start: int, end: int) -> tuple[int, int] | None:
        """Normalised span of a pinyin match ``[start, end)``, or ``None`` if it does not respect syllable edges
        or contains no letter typed as such (pure-ideograph sound matches are left to the homophone table)."""
        import numpy as np

        k0 = self.piece_at(start)
        if k0 < 0:
            return None
        k0 = int(np.searchsorted(self.bounds, start, side="left"))  # first piece at start (skip empty ones)
        k1 = int(np.searchsorted(self.bounds, end, side="left"))
        if end < len(self.text) and (k1 >= len(self.bounds) or int(self.bounds[k1]) != end):
            return None
        if k1 <= k0:
            return None
        latin, src = self.latin, self.src
        # A Latin run may be entered only at its first letter and left only after its last one.
        if latin[k0] and k0 > 0 and latin[k0 - 1]:
            return None
        if latin[k1 - 1] and k1 < len(latin) and latin[k1]:
            return None
        if not latin[k0:k1].any() or (src[k0:k1] < 0).any():
            return None
        return int(src[k0]), int(src[k1 - 1]) + 1

    def source_spans(self, starts: Any, ends: Any) -> tuple[Any, Any, Any]:
        """:meth:`source_span` for many matches at once: ``(ok, a, b)`` arrays, where ``ok`` tells which
        matches have a span (``[a, b)``, meaningless where not ``ok``). Same tests, as whole-array steps."""
        import numpy as np

        s, e = np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64)
        bounds, latin, src = self.bounds, self.latin, self.src
        nb = len(bounds)
        if not nb or not len(s):
            empty = np.zeros(len(s), dtype=np.int64)
            return np.zeros(len(s), dtype=bool), empty, empty
        last = nb - 1
        kr = np.searchsorted(bounds, s, side="right") - 1
        ok = (kr >= 0) & (bounds[np.maximum(kr, 0)] == s)
        k0 = np.searchsorted(bounds, s, side="left")
        k1 = np.searchsorted(bounds, e, side="left")
        ok &= ~((e < len(self.text)) & ((k1 >= nb) | (bounds[np.minimum(k1, last)] != e)))
        ok &= k1 > k0
        # Indices clipped only to stay in range: where they needed clipping, ``ok`` is already False.
        k0c, k1m = np.minimum(k0, last), np.clip(k1 - 1, 0, last)
        ok &= ~(latin[k0c] & (k0 > 0) & latin[np.maximum(k0c - 1, 0)])
        ok &= ~(latin[k1m] & (k1 < nb) & latin[np.minimum(k1, last)])
        typed = np.concatenate(([0], np.cumsum(latin)))
        breaks = np.concatenate(([0], np.cumsum(src < 0)))
        k1c = np.minimum(k1, nb)
        ok &= (typed[k1c] - typed[k0c] > 0) & (breaks[k1c] == breaks[k0c])
        return ok, src[k0c], src[k1m] + 1


_SYLLABLE_BASE = 0xF0000  # Supplementary Private Use Area-A: one code point per toneless syllable
_SOUND_BARRIER = 0x0  # every character without a reading


@lru_cache(maxsize=1)
def _sound_lut() -> tuple[Any, dict[str, str]]:
    """Code point → syllable code (or the barrier), and toneless pinyin syllable → its code character."""
    if (primed := _primed("_sound_lut")) is not None:
        return primed  # type: ignore[no-any-return]
    import numpy as np

    codes: dict[str, str] = {}
    lut = np.full(0x110000, _SOUND_BARRIER, dtype=np.uint32)
    for ch, py in _pinyin_table().items():
        code = codes.setdefault(py, chr(_SYLLABLE_BASE + len(codes)))
        lut[ord(ch)] = ord(code)
    return lut, codes


def sound_table() -> Any:
    """Code point → the character :func:`sound_view` writes for it (0 for a character without a reading)."""
    return _sound_lut()[0]


def sound_key(term: str) -> str | None:
    """A normalised ideograph term as syllable codes (what :func:`sound_view` produces), or ``None``."""
    _, codes = _sound_lut()
    out = []
    for ch in term:
        py = char_pinyin(ch)
        if not py:
            return None
        out.append(codes[py])
    return "".join(out)


def sound_view(norm_text: str) -> str | None:
    """The normalised text with every ideograph replaced by ONE code for its toneless syllable (1:1, so offsets
    are unchanged) and every other character by a barrier; ``None`` if the text has no ideograph.

    Matching :func:`sound_key` forms against it finds sound-alike spellings (沙币 for 傻逼) at C speed.
    """
    import numpy as np

    if not _HAS_CJK_RE.search(norm_text):
        return None
    lut, _ = _sound_lut()
    cps = np.frombuffer(norm_text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    return lut[cps].tobytes().decode("utf-32-le")


def _latin_windows_np(cps: Any) -> tuple[Any, Any]:
    """:func:`_latin_windows` vectorised over the code points of the text: ``(starts, ends)`` arrays."""
    import numpy as np

    n = len(cps)
    lidx = np.flatnonzero((cps >= 97) & (cps <= 122))
    if not len(lidx):
        return lidx, lidx
    new = np.concatenate(([True], np.diff(lidx) != 1))
    s = lidx[new]
    e = np.concatenate((lidx[np.flatnonzero(new)[1:] - 1], lidx[-1:])) + 1
    flags = _vector_tables()["flags"]
    steps = np.arange(1, _PINYIN_PAD + 1)
    # Ideographs touching each run on the left (s-1, s-2, ...) and on the right (e, e+1, ...), at most
    # _PINYIN_PAD, counted up to the first character that is not one.
    left_at = s[:, None] - steps[None, :]
    left_ok = (left_at >= 0) & ((flags[cps[np.maximum(left_at, 0)]] & _F_CJK) != 0)
    right_at = e[:, None] + steps[None, :] - 1
    right_ok = (right_at < n) & ((flags[cps[np.minimum(right_at, n - 1)]] & _F_CJK) != 0)
    a = s - np.cumprod(left_ok, axis=1).sum(axis=1)
    b = e + np.cumprod(right_ok, axis=1).sum(axis=1)
    touch = (a < s) | (b > e)
    a, b = a[touch], b[touch]
    if not len(a):
        return a, b
    # Merge a window into the previous one when they overlap or touch (b only grows: runs are in order).
    new = np.concatenate(([True], a[1:] > b[:-1]))
    last = np.concatenate((np.flatnonzero(new)[1:] - 1, [len(a) - 1]))
    return a[new], b[last]


def pinyin_view(norm_text: str, cps: Any = None) -> PinyinView | None:
    """Build the pinyin view around Latin letters that touch ideographs; ``None`` if there are none.

    Pure-ideograph text is left out on purpose: matching every Chinese text by sound alone flags ordinary
    words (草拟 reads like an insult); explicit homophones cover the common cases instead. ``cps`` may pass
    the text's code points (``Normalized.code_points()``) when the caller has them.
    """
    import numpy as np

    if not (_HAS_LATIN_RE.search(norm_text) and _HAS_CJK_RE.search(norm_text)):
        return None
    if cps is None:
        cps = np.frombuffer(norm_text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    lib = fastpath.compiled()
    if lib is not None:
        flags = _vector_tables()["flags"]
        a, b = lib.latin_windows(cps, flags, _PINYIN_PAD)
        if not a:
            return None
        view, bounds, src, latin = lib.pinyin_view(cps, a, b, _sound_lut()[0], _syllables_by_code(), flags)
        return PinyinView(
            view, np.frombuffer(bounds, np.int64), np.frombuffer(src, np.int64), np.frombuffer(latin, np.bool_)
        )
    wa, wb = _latin_windows_np(cps)
    if not len(wa):
        return None
    _, lengths, _ = _pinyin_arrays()
    lens = wb - wa + 1  # each window and the space after it
    cum = np.cumsum(lens)
    src = np.arange(int(cum[-1]), dtype=np.int64) - np.repeat(cum - lens - wa, lens)
    src[cum - 1] = -1
    joined_cps = cps[np.maximum(src, 0)].astype(np.uint32)
    joined_cps[cum - 1] = ord(" ")
    joined = joined_cps.tobytes().decode("utf-32-le", "surrogatepass")
    piece_len = lengths[joined_cps]
    bounds = np.cumsum(piece_len) - piece_len
    latin = (joined_cps >= ord("a")) & (joined_cps <= ord("z"))
    by_char = _pinyin_by_char()
    # A join over a dict keyed by character: str.translate with multi-character values costs ~0.5 us a char.
    return PinyinView("".join([by_char.get(ch, ch) for ch in joined]), bounds, src, latin)


@lru_cache(maxsize=1)
def _syllables_by_code() -> tuple[str, ...]:
    """Toneless syllables indexed by their sound code minus ``_SYLLABLE_BASE`` (for the compiled pinyin view,
    which reads an ideograph's syllable through the sound lookup: one table for both views)."""
    _, codes = _sound_lut()
    out = [""] * len(codes)
    for syllable, code in codes.items():
        out[ord(code) - _SYLLABLE_BASE] = syllable
    return tuple(out)


@lru_cache(maxsize=1)
def _pinyin_by_char() -> dict[str, str]:
    """The translate table of :func:`_pinyin_arrays` keyed by character instead of code point."""
    return {chr(cp): py for cp, py in _pinyin_arrays()[0].items()}


# Caches derived from the primeable tables, dropped with them (their contents are the same: clearing them only
# lets the old objects go). The extension holds the old normaliser tables until the next call hands it new ones.
_DERIVED = (_compiled_tables_set, _syllables, _syllables_by_code, _pinyin_by_char)
