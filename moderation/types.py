"""Public value types of the moderation engine: taxonomy, evidence (``Hit``), result (``Verdict``), errors.

Exception tree (one root for the package)::

    ModerationError
    ├── LexiconError        a lexicon file or an organisation list is malformed
    ├── PolicyError         a threshold or override is invalid
    └── ClassifierError     the transformer classifier failed (raised by ``moderation.classifier``)

Everything here is pure data: no IO, JSON-safe through ``to_dict`` / ``from_dict`` so a verdict can be stored
in the database and read back unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

#: The fixed taxonomy. Every score and hit uses one of these names.
CATEGORIES: tuple[str, ...] = (
    "politics",
    "porn",
    "violence",
    "gambling",
    "fraud",
    "ads",
    "abuse",
    "privacy",
    "custom",
)

Decision = Literal["pass", "review", "reject"]
Source = Literal["lexicon", "pii", "model"]
Severity = Literal["block", "review"]

DECISIONS: tuple[str, ...] = ("pass", "review", "reject")
SEVERITIES: tuple[str, ...] = ("block", "review")


class ModerationError(Exception):
    """Root of every error raised by the ``moderation`` package."""


class LexiconError(ModerationError):
    """A lexicon file, an organisation deny-/allow-list or a term in it is malformed."""


class PolicyError(ModerationError):
    """A policy threshold or override is invalid (unknown category, value outside 0..1, review > reject)."""


class ClassifierError(ModerationError):
    """The transformer classifier could not be loaded or failed to score."""


@dataclass(frozen=True, slots=True)
class Hit:
    """One piece of evidence.

    ``start``/``end`` are offsets into the ORIGINAL text (Python string indices, end exclusive) and
    ``text == original[start:end]``, so a reviewer sees exactly the characters that triggered the hit even when
    the match was found in the normalised or pinyin view. ``term`` is the lexicon term (or detector name) that
    matched and ``list`` names where it came from (``default``, ``org:7``, ``pii:mobile``, ``model``...).
    ``severity`` is ``block`` or ``review`` for lexicon hits; personal data and model hits are ``review``.
    """

    category: str
    source: Source
    term: str
    list: str
    start: int
    end: int
    text: str
    severity: Severity = "review"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (the issue's hit shape plus ``severity``)."""
        return {
            "category": self.category,
            "source": self.source,
            "term": self.term,
            "list": self.list,
            "start": self.start,
            "end": self.end,
            "text": self.text,
            "severity": self.severity,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Hit:
        """Inverse of :meth:`to_dict`; tolerates a missing ``severity`` (older rows)."""
        try:
            return cls(
                category=str(data["category"]),
                source=data["source"],
                term=str(data["term"]),
                list=str(data["list"]),
                start=int(data["start"]),
                end=int(data["end"]),
                text=str(data["text"]),
                severity=data.get("severity", "review"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModerationError(f"malformed hit: {data!r}") from exc


@dataclass(frozen=True, slots=True)
class Verdict:
    """The result of screening one text.

    ``categories`` holds a score in 0..1 per category that has any signal (model probability, or 1.0 for a
    block-severity lexicon hit); categories without signal are absent. ``model_version`` is ``"none"`` when the
    classifier was not used.
    """

    decision: Decision
    categories: dict[str, float] = field(default_factory=dict)
    hits: list[Hit] = field(default_factory=list)
    model_version: str = "none"
    lexicon_version: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict, the form stored in the database."""
        return {
            "decision": self.decision,
            "categories": {k: round(float(v), 6) for k, v in self.categories.items()},
            "hits": [h.to_dict() for h in self.hits],
            "model_version": self.model_version,
            "lexicon_version": self.lexicon_version,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Verdict:
        """Inverse of :meth:`to_dict`."""
        try:
            decision = data["decision"]
            if decision not in DECISIONS:
                raise ValueError(decision)
            return cls(
                decision=decision,
                categories={str(k): float(v) for k, v in dict(data.get("categories", {})).items()},
                hits=[Hit.from_dict(h) for h in data.get("hits", [])],
                model_version=str(data.get("model_version", "none")),
                lexicon_version=str(data.get("lexicon_version", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModerationError(f"malformed verdict: {data!r}") from exc
