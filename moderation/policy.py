"""Policy: turns evidence (hits and model scores) into pass / review / reject. Pure, no IO.

Rules, in order:

* a category listed in ``disabled`` is ignored entirely (an organisation that does not screen ads);
* a lexicon hit on a *group word* alone (list ``<list>~group``: 河南人, 穆斯林 — a word that names a group of
  people and insults nobody) → ``group_action`` (default ``pass``: evidence only). An insult next to it is a
  hit of its own and decides as usual. A hit that quotes or condemns an insult (``~mention``) comes with
  review severity from the lexicon, so it goes to review instead of being rejected;
* a lexicon hit of severity ``block`` → ``block_action`` (default ``reject``);
* a lexicon hit of severity ``review`` → ``review``;
* personal data → ``pii_action`` (default ``review``);
* a model score ≥ the category's ``reject`` threshold → ``reject``; ≥ its ``review`` threshold → ``review``;
  a threshold of ``None`` means never;
* otherwise ``pass``. The strictest outcome wins.

Overrides are plain dicts (JSON in the database), layered: ``Policy.default().with_overrides(org).with_overrides(
channel)``. Accepted keys::

    {"thresholds": {"abuse": {"review": 0.4, "reject": 0.9}},   # per category, either key optional
     "block_action": "reject" | "review",
     "pii_action": "pass" | "review" | "reject",
     "group_action": "pass" | "review" | "reject",
     "disabled": ["ads"],        # replaces the list
     "enabled": ["ads"]}         # removes from the list
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from moderation.types import CATEGORIES, Decision, Hit, PolicyError

__all__ = ["DEFAULT_THRESHOLDS", "GROUP_SUFFIX", "MENTION_SUFFIX", "Policy"]

#: List-name suffixes the lexicon gives a hit on a group word alone, and a hit that quotes/condemns an insult.
GROUP_SUFFIX = "~group"
MENTION_SUFFIX = "~mention"

# (review, reject) per category for model probabilities. Ads never reject on a score alone (too many honest
# promotions of union events look like ads); politics needs near-certainty to reject automatically. Abuse
# never rejects on a score alone either: the classifier flags a third of anti-bias statements (texts that
# quote an insult to condemn it; MODEL_CARD.md), so a person decides; block-severity lexicon hits still reject.
DEFAULT_THRESHOLDS: dict[str, tuple[float | None, float | None]] = {
    "politics": (0.5, 0.95),
    "porn": (0.5, 0.9),
    "violence": (0.5, 0.9),
    "gambling": (0.5, 0.9),
    "fraud": (0.5, 0.9),
    "ads": (0.6, None),
    "abuse": (0.5, None),
    "privacy": (0.5, None),
    "custom": (0.5, 0.9),
}

_RANK = {"pass": 0, "review": 1, "reject": 2}
_ACTIONS = ("pass", "review", "reject")


def _threshold(value: Any, where: str) -> float | None:
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise PolicyError(f"{where}: threshold {value!r} is not a number") from exc
    if not 0.0 <= v <= 1.0:
        raise PolicyError(f"{where}: threshold {v} outside 0..1 (use null for 'never')")
    return v


@dataclass(frozen=True, slots=True)
class Policy:
    """Per-category thresholds and actions. Immutable: overrides return a new policy."""

    thresholds: Mapping[str, tuple[float | None, float | None]] = field(
        default_factory=lambda: dict(DEFAULT_THRESHOLDS)
    )
    block_action: Decision = "reject"
    pii_action: Decision = "review"
    disabled: frozenset[str] = frozenset()
    group_action: Decision = "pass"

    def __post_init__(self) -> None:
        for cat, (rev, rej) in self.thresholds.items():
            if cat not in CATEGORIES:
                raise PolicyError(f"unknown category {cat!r} in thresholds")
            _threshold(rev, cat)
            _threshold(rej, cat)
            if rev is not None and rej is not None and rev > rej:
                raise PolicyError(f"{cat}: review threshold {rev} is above reject threshold {rej}")
        actions = ((self.block_action, "block_action"), (self.pii_action, "pii_action"))
        for action, name in (*actions, (self.group_action, "group_action")):
            if action not in _ACTIONS:
                raise PolicyError(f"{name} must be one of {_ACTIONS}, not {action!r}")
        unknown = set(self.disabled) - set(CATEGORIES)
        if unknown:
            raise PolicyError(f"unknown categories in disabled: {sorted(unknown)}")

    @classmethod
    def default(cls) -> Policy:
        """The shipped defaults (:data:`DEFAULT_THRESHOLDS`, block hits reject, personal data to review)."""
        return cls()

    def with_overrides(self, overrides: Mapping[str, Any] | None) -> Policy:
        """A new policy with ``overrides`` applied (see the module docstring for the keys)."""
        if not overrides:
            return self
        unknown = set(overrides) - {"thresholds", "block_action", "pii_action", "group_action", "disabled", "enabled"}
        if unknown:
            raise PolicyError(f"unknown policy keys: {sorted(unknown)}")
        thresholds = dict(self.thresholds)
        for cat, spec in dict(overrides.get("thresholds") or {}).items():
            if cat not in CATEGORIES:
                raise PolicyError(f"unknown category {cat!r} in thresholds")
            if not isinstance(spec, Mapping) or set(spec) - {"review", "reject"}:
                raise PolicyError(f"{cat}: expected {{'review': x, 'reject': y}}, got {spec!r}")
            rev, rej = thresholds.get(cat, (None, None))
            if "review" in spec:
                rev = _threshold(spec["review"], f"{cat}.review")
            if "reject" in spec:
                rej = _threshold(spec["reject"], f"{cat}.reject")
            thresholds[cat] = (rev, rej)
        disabled = set(self.disabled)
        if "disabled" in overrides:
            disabled = set(_names(overrides["disabled"]))
        disabled -= set(_names(overrides.get("enabled") or ()))
        return replace(
            self,
            thresholds=thresholds,
            block_action=overrides.get("block_action", self.block_action),
            pii_action=overrides.get("pii_action", self.pii_action),
            group_action=overrides.get("group_action", self.group_action),
            disabled=frozenset(disabled),
        )

    def decide(self, scores: Mapping[str, float], hits: Iterable[Hit]) -> Decision:
        """The decision for model ``scores`` and lexicon/personal-data ``hits``."""
        decision: Decision = "pass"
        for h in hits:
            if h.category in self.disabled:
                continue
            if h.source == "lexicon" and h.list.endswith(GROUP_SUFFIX):
                outcome: Decision = self.group_action
            elif h.source == "lexicon":
                outcome = self.block_action if h.severity == "block" else "review"
            elif h.source == "pii":
                outcome = self.pii_action
            else:
                continue  # model hits are judged through their scores below
            if _RANK[outcome] > _RANK[decision]:
                decision = outcome
        for cat, score in scores.items():
            if cat in self.disabled:
                continue
            rev, rej = self.thresholds.get(cat, (None, None))
            if rej is not None and score >= rej:
                return "reject"
            if rev is not None and score >= rev and decision == "pass":
                decision = "review"
        return decision

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (the same shape :meth:`with_overrides` accepts)."""
        return {
            "thresholds": {c: {"review": r, "reject": j} for c, (r, j) in self.thresholds.items()},
            "block_action": self.block_action,
            "pii_action": self.pii_action,
            "group_action": self.group_action,
            "disabled": sorted(self.disabled),
        }


def _names(value: Any) -> list[str]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise PolicyError(f"expected a list of category names, got {value!r}")
    names = [str(v) for v in value]
    unknown = set(names) - set(CATEGORIES)
    if unknown:
        raise PolicyError(f"unknown categories: {sorted(unknown)}")
    return names
