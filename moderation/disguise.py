"""Disguised copies of evaluation texts: ``python -m moderation.disguise --out DIR [--split dev]``.

Deterministic (every choice is seeded by a hash of the text and the style, so a text gets the same disguise
in every run and on every machine). Used by ``moderation.evaluate`` to measure recall per disguise style
against the same texts written plainly; not used at run time.

What is disguised: the *keywords* of a text — non-overlapping, leftmost-longest occurrences of insult words
from two lists: the abuse terms of our default lexicon (``data/lexicons/default.tsv``) and, when the data root
has it, SWSR's ``SexHateLex.txt`` (MIT, 3,016 terms; a list the engine does not ship, so the rules are not
simply finding their own terms again). A text without a keyword is left as it is and counted as unchanged.

Styles (each applied to every keyword of the text):

* ``full_pinyin`` — each character as its toneless syllable, joined (傻逼 → ``shabi``);
* ``spaced_pinyin`` — the same, syllables separated by spaces (``sha bi``);
* ``initials`` — each character as its initial (``sb``);
* ``mixed_pinyin`` — each character independently kept, full syllable or initial, at least one changed
  (``sha逼``, ``傻b``, ``s逼``);
* ``sound_alike`` — each character replaced, with probability 1/2 (at least one), by a common character of
  the same toneless syllable (``煞笔``, ``沙币``);
* ``symbols`` — a random symbol between the characters (``傻.逼``);
* ``whole_text_pinyin`` — the whole text in toneless pinyin, words separated by spaces: no keyword needed.
  No lexicon can read this; it shows what a reader that only knows characters loses.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from pathlib import Path

from moderation.normalize import char_pinyin

__all__ = ["STYLES", "TRAIN_STYLES", "disguise", "disguise_all", "keyword_spans", "load_keywords", "training_copies"]

_CJK = re.compile(r"[\u4e00-\u9fff]")
_SYMBOLS = ".@#*_-~ "


@lru_cache(maxsize=1)
def _same_sound() -> dict[str, list[str]]:
    """Toneless syllable → common characters with that reading (jieba single-character words, freq ≥ 1000)."""
    import jieba  # local: only the sound-alike style needs jieba's dictionary

    path = Path(jieba.__file__).parent / "dict.txt"
    out: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        word, freq, *_ = line.split()
        if len(word) == 1 and _CJK.match(word) and int(freq) >= 1000:
            py = char_pinyin(word)
            if py:
                out.setdefault(py, []).append(word)
    return out


def _rng(text: str, style: str) -> random.Random:
    seed = int(hashlib.sha1(f"{style}\x00{text}".encode(), usedforsecurity=False).hexdigest()[:12], 16)
    return random.Random(seed)  # noqa: S311 - a reproducible disguise, not a secret


def _full(word: str, rng: random.Random) -> str:
    return "".join(char_pinyin(c) or c for c in word)


def _spaced(word: str, rng: random.Random) -> str:
    return " ".join(char_pinyin(c) or c for c in word)


def _initials(word: str, rng: random.Random) -> str:
    return "".join((char_pinyin(c) or c)[0] for c in word)


def _mixed(word: str, rng: random.Random) -> str:
    while True:
        choice = [rng.randrange(3) for _ in word]
        if any(choice):
            break
    out = []
    for c, k in zip(word, choice, strict=True):
        py = char_pinyin(c) or c
        out.append(c if k == 0 else py if k == 1 else py[0])
    return "".join(out)


def _sound(word: str, rng: random.Random) -> str:
    table = _same_sound()
    out = list(word)
    options = [i for i, c in enumerate(word) if len(table.get(char_pinyin(c), ())) > 1]
    if not options:
        return word
    must = rng.choice(options)
    for i in options:
        if i == must or rng.random() < 0.5:
            others = [c for c in table[char_pinyin(word[i])] if c != word[i]]
            out[i] = rng.choice(others)
    return "".join(out)


def _symbols(word: str, rng: random.Random) -> str:
    return word[0] + "".join(rng.choice(_SYMBOLS) + c for c in word[1:])


#: Keyword styles: word → disguised word.
_WORD_STYLES: dict[str, Callable[[str, random.Random], str]] = {
    "full_pinyin": _full,
    "spaced_pinyin": _spaced,
    "initials": _initials,
    "mixed_pinyin": _mixed,
    "sound_alike": _sound,
    "symbols": _symbols,
}

#: Every style name, in report order.
STYLES: tuple[str, ...] = (*_WORD_STYLES, "whole_text_pinyin")
#: The styles that training copies are written in (``symbols`` is undone by the normaliser before the model
#: reads a text, so a copy would only repeat the plain text).
TRAIN_STYLES: tuple[str, ...] = ("full_pinyin", "spaced_pinyin", "initials", "mixed_pinyin", "sound_alike")


def load_keywords(data_root: Path | None = None) -> list[str]:
    """The keyword list: default-lexicon abuse terms made of ideographs, plus SWSR SexHateLex if present."""
    from moderation.lexicon import DATA_DIR, read_tsv

    words = {e.term for e in read_tsv(DATA_DIR / "default.tsv") if e.category == "abuse"}
    if data_root is not None:
        lex = data_root / "datasets" / "SWSR" / "SexHateLex.txt"
        if lex.is_file():
            words |= {ln.strip() for ln in lex.read_text(encoding="utf-8").splitlines()}
    return sorted(w for w in words if len(w) >= 2 and all(_CJK.match(c) for c in w))


class _Finder:
    """Leftmost-longest keyword search (ahocorasick_rs), built once per keyword list."""

    def __init__(self, keywords: Sequence[str]) -> None:
        import ahocorasick_rs

        self._ac = ahocorasick_rs.AhoCorasick(list(keywords), matchkind=ahocorasick_rs.MATCHKIND_LEFTMOST_LONGEST)

    def spans(self, text: str) -> list[tuple[int, int]]:
        return [(s, e) for _, s, e in self._ac.find_matches_as_indexes(text)]


def keyword_spans(text: str, keywords: Sequence[str] | _Finder) -> list[tuple[int, int]]:
    """Non-overlapping leftmost-longest ``[start, end)`` spans of ``keywords`` in ``text``."""
    finder = keywords if isinstance(keywords, _Finder) else _Finder(keywords)
    return finder.spans(text)


def _whole_text(text: str) -> str:
    import jieba  # local: segmentation only for this style

    words = []
    for w in jieba.lcut(text):
        if _CJK.search(w):
            words.append("".join(char_pinyin(c) or c for c in w))
        elif w.strip():
            words.append(w.strip())
    return " ".join(words)


def disguise(text: str, style: str, spans: Iterable[tuple[int, int]] = ()) -> str:
    """``text`` with every keyword span disguised in ``style`` (deterministic)."""
    if style == "whole_text_pinyin":
        return _whole_text(text)
    fn = _WORD_STYLES[style]
    rng = _rng(text, style)
    out: list[str] = []
    last = 0
    for s, e in spans:
        out += [text[last:s], fn(text[s:e], rng)]
        last = e
    out.append(text[last:])
    return "".join(out)


def disguise_all(texts: Sequence[str], keywords: Sequence[str]) -> dict[str, list[str]]:
    """Style → disguised copy of every text (same order); unchanged texts are returned as they are."""
    finder = _Finder(keywords)
    spans = [finder.spans(t) for t in texts]
    return {style: [disguise(t, style, sp) for t, sp in zip(texts, spans, strict=True)] for style in STYLES}


def training_copies(
    texts: Sequence[str], keywords: Sequence[str], styles: Sequence[str] = TRAIN_STYLES, salt: str = "train"
) -> list[tuple[int, str, str]]:
    """One disguised copy per text, for training: ``[(index into texts, style, copy)]``.

    The style is picked from ``styles`` by a hash of the text (deterministic). Keywords are disguised where the
    text has any; a text without one gets one random run of two ideographs disguised instead, so that a
    harmless text with a pinyin word also reaches training and pinyin alone is no evidence of harm. Copies
    equal to their text (nothing disguisable) are left out.
    """
    finder = _Finder(keywords)
    out: list[tuple[int, str, str]] = []
    for i, text in enumerate(texts):
        rng = _rng(text, salt)
        style = styles[rng.randrange(len(styles))]
        spans = finder.spans(text)
        if not spans:
            runs = [m.start() for m in re.finditer(r"(?=[\u4e00-\u9fff]{2})", text)]
            if not runs:
                continue
            start = rng.choice(runs)
            spans = [(start, start + 2)]
        copy = disguise(text, style, spans)
        if copy != text:
            out.append((i, style, copy))
    return out


def main(argv: Sequence[str] | None = None) -> None:
    """Write ``DIR/<style>.jsonl`` (``{"id", "label", "text", "plain"}``) for a COLD split."""
    from moderation.dataset import DEFAULT_DATA_ROOT, load_cold

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    ap.add_argument("--split", default="dev", choices=("dev", "train", "select"))
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    rows = [e for e in load_cold(args.data_root) if e.split == args.split]
    copies = disguise_all([e.text for e in rows], load_keywords(args.data_root))
    args.out.mkdir(parents=True, exist_ok=True)
    for style, texts in copies.items():
        with (args.out / f"{style}.jsonl").open("w", encoding="utf-8") as fh:
            for e, t in zip(rows, texts, strict=True):
                row = {"id": e.meta.get("id", ""), "label": e.labels["abuse"], "text": t, "plain": e.text}
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        changed = sum(1 for e, t in zip(rows, texts, strict=True) if t != e.text)
        print(f"{style:18} {changed:6} of {len(rows)} texts changed -> {args.out / (style + '.jsonl')}")


if __name__ == "__main__":
    main()
