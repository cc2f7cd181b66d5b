"""Pinyin spellings of a term: the ways a short Chinese term is written to slip past a plain-text list.

Pure (no IO). For a normalised term of ideographs, every character may be written as itself, as its toneless
pinyin syllable or as the syllable's first letter (the initial), and two neighbouring Latin pieces may be
joined directly or by one space::

    傻逼 → sha逼, s逼, 傻bi, 傻b, shabi, sha bi, sb, shab, s bi, ...

:func:`pinyin_spellings` lists them with a *kind*, because the kinds carry very different false-positive
risks and the lexicon treats them differently (see ``moderation.lexicon``):

* ``mixed`` — at least one ideograph kept and at least one Latin piece (``sha逼``, ``傻b``, ``s逼``). An
  ideograph next to a letter is almost never ordinary text, so these are matched like the term itself;
* ``full`` — every character as its full syllable (``shabi``, ``sha bi``): ordinary Latin text contains such
  strings only by accident, more often the shorter they are;
* ``initials`` — every character as its initial (``sb``, ``cnm``, ``nmsl``): short codes that collide with
  English abbreviations and product names, so only a few hand-curated terms get them;
* ``partial`` — Latin only, some syllables full and some initials (``shab``, ``s bi``).

All-initial joints are never spaced: the normaliser already joins spaced single letters (``s b`` → ``sb``).
"""

from __future__ import annotations

import itertools
from typing import Literal

from moderation.normalize import char_pinyin

__all__ = ["MAX_VARIANT_CHARS", "SpellingKind", "pinyin_spellings"]

SpellingKind = Literal["mixed", "full", "initials", "partial"]

#: Terms longer than this get no generated spellings: 3**n combinations grow fast, and long terms written in
#: pinyin are left to the pinyin view (``moderation.normalize.pinyin_view``).
MAX_VARIANT_CHARS = 4


def pinyin_spellings(term: str) -> list[tuple[str, SpellingKind]]:
    """Every generated spelling of the normalised ``term`` (the term itself excluded), with its kind.

    Empty when the term is longer than :data:`MAX_VARIANT_CHARS`, shorter than 2, or contains a character
    without a pinyin reading (Latin letters, digits, punctuation: such terms are not disguised this way).
    """
    if not 2 <= len(term) <= MAX_VARIANT_CHARS:
        return []
    syllables = [char_pinyin(ch) for ch in term]
    if not all(syllables):
        return []
    # Per character: (piece, 0 = ideograph, 1 = full syllable, 2 = initial).
    options = [[(ch, 0), (py, 1), (py[0], 2)] for ch, py in zip(term, syllables, strict=True)]
    out: dict[str, SpellingKind] = {}
    for combo in itertools.product(*options):
        kinds = {k for _, k in combo}
        if kinds == {0}:
            continue
        if 0 in kinds:
            kind: SpellingKind = "mixed"
        elif kinds == {1}:
            kind = "full"
        elif kinds == {2}:
            kind = "initials"
        else:
            kind = "partial"
        # Joints between two Latin pieces: direct or one space, except initial+initial (already joined).
        joints: list[tuple[str, ...]] = []
        for (_, k1), (_, k2) in itertools.pairwise(combo):
            joints.append(("", " ") if k1 and k2 and not (k1 == 2 and k2 == 2) else ("",))
        for joint in itertools.product(*joints):
            text = combo[0][0] + "".join(j + piece for j, (piece, _) in zip(joint, combo[1:], strict=True))
            out.setdefault(text, kind)
    return list(out.items())
