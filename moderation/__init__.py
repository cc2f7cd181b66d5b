"""Content moderation for media-matrix: a Chinese harmful-content screen, offline.

Public interface::

    from moderation import screen, screen_batch, Policy, Verdict
    v = screen("文本")                      # Verdict(decision, categories, hits, model_version, lexicon_version)
    vs = screen_batch(["…", "…"])
    org = get_screener().compile_org_lists(deny=[("某词", "custom", "block")], allow=["某某大桥"], version=3,
                                           key="org-7")
    v = screen("文本", policy=Policy.default().with_overrides({"thresholds": {"abuse": {"review": 0.4}}}), org=org)

Configuration: the package reads no environment variables and imports no other package of the project. The
application passes its knobs once at start-up::

    configure(ModerationConfig(classifier=False))   # or model_dir=, base_model=, cache_dir=

Without that call the defaults apply (:class:`ModerationConfig`): classifier on, shipped model, bundled
e5-small. ``get_screener(config)`` gives a screener for another configuration without changing the default.

Pieces (each importable on its own): :mod:`moderation.normalize` (disguise-undoing normaliser with offsets),
:mod:`moderation.lexicon` (Aho–Corasick deny/allow lists), :mod:`moderation.pii` (personal data),
:mod:`moderation.policy` (decisions), :mod:`moderation.engine` (the process-wide screener),
:mod:`moderation.config` (the knobs), the classifier in ``moderation.classifier`` (optional: without it, or with
``ModerationConfig(classifier=False)``, rules only). Errors derive from :class:`moderation.types.ModerationError`.
"""

from __future__ import annotations

from collections.abc import Sequence

from moderation.config import ModerationConfig, current_config
from moderation.engine import SCREEN_BATCH, Screener, configure, get_screener, reset_screener
from moderation.lexicon import OrgLists
from moderation.policy import Policy
from moderation.types import (
    CATEGORIES,
    ClassifierError,
    Hit,
    LexiconError,
    ModerationError,
    PolicyError,
    Verdict,
)

__all__ = [
    "CATEGORIES",
    "SCREEN_BATCH",
    "ClassifierError",
    "Hit",
    "LexiconError",
    "ModerationConfig",
    "ModerationError",
    "OrgLists",
    "Policy",
    "PolicyError",
    "Screener",
    "Verdict",
    "configure",
    "current_config",
    "default_policy",
    "get_screener",
    "reset_screener",
    "screen",
    "screen_batch",
]


def default_policy() -> Policy:
    """The process-wide default policy (with the classifier's own review thresholds once it is loaded).

    Layer organisation and channel overrides on top of this one:
    ``default_policy().with_overrides(org).with_overrides(channel)``.
    """
    screener = get_screener()
    _ = screener.classifier  # loading the model may adopt its thresholds
    return screener.policy


def screen(text: str, *, policy: Policy | None = None, org: OrgLists | None = None) -> Verdict:
    """Screen one text with the process-wide engine (lexicons compiled once, model loaded once)."""
    return get_screener().screen(text, policy=policy, org=org)


def screen_batch(
    texts: Sequence[str],
    *,
    policy: Policy | None = None,
    org: OrgLists | None = None,
    batch_size: int = SCREEN_BATCH,
    gate: float | None = None,
) -> list[Verdict]:
    """Screen many texts; the classifier sees them in batches of ``batch_size``. ``gate``: only texts with a rule
    hit or a char n-gram score of at least ``gate`` go through the transformer (see ``Screener.screen_batch``)."""
    return get_screener().screen_batch(texts, policy=policy, org=org, batch_size=batch_size, gate=gate)
