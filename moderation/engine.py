"""The screener: normaliser + lexicons + personal-data detectors + (optional) classifier + policy.

One :class:`Screener` per process is enough (``moderation.screen`` uses :func:`get_screener`): the default
lexicon is compiled once, the classifier loaded once. What it loads comes from a
:class:`moderation.config.ModerationConfig`, the process default unless one is passed; :func:`configure` sets
that default (the application calls it once at start-up) and drops the screeners built under the old one.

Organisation lists are compiled on demand and cached by ``(key, version)``, so when the lead bumps a list's
version in the database the next screen uses the new list without a restart, and unchanged versions cost nothing.

Scores in a verdict (``Verdict.categories``): the model's probability per category it covers, raised to 1.0 for
a category with a block-severity lexicon hit, to at least 0.7 for a review-severity hit and to 1.0 for
``privacy`` when personal data was found. The decision itself comes from :class:`moderation.policy.Policy`.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any, Protocol

from moderation.config import ModerationConfig, _install, current_config
from moderation.lexicon import DEFAULT_BACKEND, Lexicon, OrgLists, load_builtin
from moderation.normalize import Normalized, apply_homophones, normalize
from moderation.pii import detect as detect_pii
from moderation.policy import GROUP_SUFFIX, Policy
from moderation.types import CATEGORIES, Hit, ModerationError, Verdict

__all__ = [
    "Classifier",
    "Screener",
    "classifier_view",
    "configure",
    "get_screener",
    "model_text",
    "reset_screener",
    "verdict_summary",
]

log = logging.getLogger(__name__)

_BLOCK_SCORE = 1.0
_REVIEW_SCORE = 0.7
_ORG_CACHE_SIZE = 256
_SCREENER_CACHE_SIZE = 4  # screeners per distinct config; each may hold a loaded model (~100 MB)
#: Texts per classifier call in ``screen_batch``: 8 forward passes of 16, run side by side on torch's threads
#: (``Classifier._score_windows``). Fewer leave the threads idle more often between calls (the tokenising, the
#: last pass waited for): 60-char texts on 2 threads, medians 338-357 / 349-383 / 374-388 texts/s at 32 / 64 /
#: 128 (``python -m bench.moderation --batching``). More hold the classifier's lock longer (~0.3 s for 128 short
#: texts).
SCREEN_BATCH = 128


class Classifier(Protocol):
    """What the engine needs from ``moderation.classifier.get_classifier()``."""

    version: str

    def predict(self, texts: list[str]) -> list[dict[str, float]]:
        """Per text, category → probability for the categories the model covers."""
        ...


def classifier_view(norm_text: str) -> str:
    """The text given to the classifier: normalised (disguises undone) with homophones spelled canonically.

    Feeding this rather than the raw text is what keeps the model's recall on ``傻.逼``/``草泥马``-style text
    close to its recall on the plain spelling.
    """
    return apply_homophones(norm_text) or norm_text


def model_text(original: str, norm_text: str, hits: Sequence[Hit]) -> str:
    """What the classifier reads for one text: :func:`classifier_view`, and where the lexicon recognised a
    disguised spelling (``沙币``, ``sha逼``, ``法輪功``), the term's plain spelling in its place, so the model
    judges the text as if it had been written plainly. Offsets do not matter here; lengths may change.
    """
    disguised = sorted((h for h in hits if h.source == "lexicon" and h.text != h.term), key=lambda h: (h.start, -h.end))
    if not disguised:
        return classifier_view(norm_text)
    pieces: list[str] = []
    last = 0
    for h in disguised:
        if h.start < last:
            continue  # overlapping evidence: the first (longest) spelling wins
        pieces += [original[last : h.start], h.term]
        last = h.end
    pieces.append(original[last:])
    return classifier_view(normalize("".join(pieces)).text)


def _load_classifier(config: ModerationConfig) -> Classifier | None:
    """The classifier ``config`` asks for, or ``None`` (switched off, module absent, or it failed to load)."""
    if not config.classifier:
        return None  # before the import: a rules-only process never pays for importing torch
    try:
        # Imported here, not at the top: it pulls in torch and transformers (seconds), which rules-only
        # screening never needs.
        from moderation.classifier import get_classifier
    except ImportError:
        log.info("moderation.classifier not available: screening with rules only")
        return None
    try:
        return get_classifier(config)
    except (ModerationError, OSError) as exc:
        # Fail open on the model only: rules still screen, and model_version "none" records the gap.
        log.warning("classifier failed to load, screening with rules only: %s", exc)
        return None


def _with_model_thresholds(policy: Policy, clf: Classifier) -> Policy:
    """``policy`` with review thresholds taken from ``clf.thresholds`` where it has any (and they fit 0..reject)."""
    overrides: dict[str, dict[str, float]] = {}
    for cat, value in dict(getattr(clf, "thresholds", None) or {}).items():
        if cat not in CATEGORIES or isinstance(value, bool) or not isinstance(value, int | float):
            continue  # a shape we do not know is ignored rather than trusted
        reject = policy.thresholds.get(cat, (None, None))[1]
        if 0.0 < float(value) <= (reject if reject is not None else 1.0):
            overrides[cat] = {"review": float(value)}
    return policy.with_overrides({"thresholds": overrides}) if overrides else policy


class Screener:
    """Screens texts. Thread-safe once built; build one per process (see :func:`get_screener`)."""

    def __init__(
        self,
        lexicon: Lexicon | None = None,
        classifier: Classifier | str | None = "auto",
        policy: Policy | None = None,
        backend: str = DEFAULT_BACKEND,
        config: ModerationConfig | None = None,
    ) -> None:
        """``classifier="auto"`` loads the classifier that ``config`` (default: the process default) names,
        lazily on first use; pass a classifier object to use that one, or ``None`` for rules only."""
        self.config = config if config is not None else current_config()
        self.lexicon = lexicon if lexicon is not None else load_builtin("default", backend, self.config.cache_dir)
        self.policy = policy or Policy.default()
        # The default policy takes the classifier's own per-category thresholds (picked for max F1 when it was
        # trained) as review thresholds; a policy passed in explicitly is used as it is.
        self._adopt_model_thresholds = policy is None
        self.backend = backend
        self._classifier: Classifier | str | None = classifier
        self._lock = threading.Lock()
        self._orgs: OrderedDict[tuple[str, int], OrgLists] = OrderedDict()

    # -- classifier ----------------------------------------------------------------------------------------
    @property
    def classifier(self) -> Classifier | None:
        """The classifier, loaded on first access (once per process)."""
        if isinstance(self._classifier, str):
            with self._lock:
                if isinstance(self._classifier, str):
                    clf = _load_classifier(self.config)
                    if clf is not None and self._adopt_model_thresholds:
                        self.policy = _with_model_thresholds(self.policy, clf)
                    self._classifier = clf
        return self._classifier  # type: ignore[return-value]

    @property
    def model_version(self) -> str:
        """The classifier's version, or ``"none"`` when screening with rules only."""
        clf = self.classifier
        return str(getattr(clf, "version", "unknown")) if clf is not None else "none"

    # -- organisation lists --------------------------------------------------------------------------------
    def compile_org_lists(
        self,
        deny: Iterable[tuple[str, str, str]] = (),
        allow: Iterable[str] = (),
        version: int = 0,
        key: str = "org",
    ) -> OrgLists:
        """Compile (or fetch from cache) an organisation's lists at ``version``.

        ``deny`` = ``[(term, category, severity)]``, ``allow`` = ``[term]``. Cached by ``(key, version)``:
        pass a new version number whenever the lists change and the next call compiles them; the same version
        returns the cached object without reading ``deny``/``allow`` (they may be lazy iterables).
        """
        cache_key = (str(key), int(version))
        with self._lock:
            cached = self._orgs.get(cache_key)
            if cached is not None:
                self._orgs.move_to_end(cache_key)
                return cached
        compiled = OrgLists.compile(deny, allow, int(version), str(key), self.backend)
        with self._lock:
            # Older versions of the same organisation are dead weight once a newer one is compiled.
            for k in [k for k in self._orgs if k[0] == cache_key[0] and k[1] < cache_key[1]]:
                del self._orgs[k]
            self._orgs[cache_key] = compiled
            while len(self._orgs) > _ORG_CACHE_SIZE:
                self._orgs.popitem(last=False)
        return compiled

    # -- screening -----------------------------------------------------------------------------------------
    def evidence(self, text: str, org: OrgLists | None = None) -> tuple[Normalized, list[Hit]]:
        """Normalise and collect lexicon + personal-data hits (no model, no decision)."""
        if not isinstance(text, str):
            raise ModerationError(f"text must be str, not {type(text).__name__}")
        norm = normalize(text)
        return norm, self._hits(norm, org)

    def _hits(self, norm: Normalized, org: OrgLists | None) -> list[Hit]:
        if org is None:
            hits = self.lexicon.match(norm)
        else:
            # Both allow-lists apply to both deny-lists: the default allow-list protects 南京市长江大桥 from an
            # organisation's 江大桥 as much as from a built-in term.
            allow = org.lexicon.allow_spans(norm.text) + self.lexicon.allow_spans(norm.text)
            hits = self.lexicon.match(norm, allow)
            hits += org.lexicon.match(norm, allow)
        hits += detect_pii(norm)
        hits.sort(key=lambda h: (h.start, h.end))
        return hits

    def evidence_batch(self, texts: Sequence[str], org: OrgLists | None = None) -> list[tuple[str, list[Hit]]]:
        """``(normalised text, hits)`` per text, computed on the texts joined by line breaks.

        One normalisation and one automaton pass for the whole batch: the vectorised normaliser and the
        Aho–Corasick scan then run at their large-text speed instead of paying their fixed cost per text.
        Nothing matches across a line break (it is a hard boundary for the normaliser, no term contains one,
        and the personal-data patterns stay on one line), so the result equals screening texts one by one.
        """
        for t in texts:
            if not isinstance(t, str):
                raise ModerationError(f"text must be str, not {type(t).__name__}")
        if len(texts) <= 1:
            return [(norm.text, hits) for norm, hits in (self.evidence(t, org) for t in texts)]
        joined = "\n".join(texts)
        norm = normalize(joined)
        hits = self._hits(norm, org)
        bases = list(itertools.accumulate((len(t) + 1 for t in texts[:-1]), initial=0))
        per_text: list[list[Hit]] = [[] for _ in texts]
        for h in hits:
            i = bisect.bisect_right(bases, h.start) - 1
            base = bases[i]
            per_text[i].append(replace(h, start=h.start - base, end=h.end - base))
        # Each text sits between two joining line breaks, which the normaliser always keeps.
        breaks = norm.norm_indices([b + len(t) for b, t in zip(bases[:-1], texts[:-1], strict=True)])
        starts = [0, *(k + 1 for k in breaks)]
        ends = [*breaks, len(norm.text)]
        out = [(norm.text[a:b], per_text[i]) for i, (a, b) in enumerate(zip(starts, ends, strict=True))]
        return out

    def screen(self, text: str, *, policy: Policy | None = None, org: OrgLists | None = None) -> Verdict:
        """Screen one text."""
        return self.screen_batch([text], policy=policy, org=org)[0]

    def screen_batch(
        self,
        texts: Sequence[str],
        *,
        policy: Policy | None = None,
        org: OrgLists | None = None,
        batch_size: int = SCREEN_BATCH,
        gate: float | None = None,
    ) -> list[Verdict]:
        """Screen many texts; the classifier gets them ``batch_size`` at a time, shortest first.

        ``gate``: a cascade for volume (the monitor's feed items): only texts with a lexicon or personal-data hit,
        or whose char n-gram scorer gives some category at least ``gate``, go through the transformer; the others
        are screened by the rules alone (no model scores), as with the classifier off. None: every text. A
        classifier without the n-gram scorer gates nothing. At 0.1, 99.3 % of COLD dev's offensive texts pass the
        gate on the n-gram score alone and 0.2 % of the monitor benchmark's union posts do.

        Sorting by length puts texts of similar length in one call, so the classifier's forward passes (several
        windows each, see ``Classifier.batch_size``) pad little; results go back in the input order. A call
        holds the classifier's lock, so a bounded ``batch_size`` also bounds how long another thread waits.
        """
        policy = policy or self.policy
        evidence = self.evidence_batch(texts, org)
        clf = self.classifier
        model_scores: list[dict[str, float]] = [{} for _ in texts]
        if clf is not None and texts:
            views = [model_text(text, norm_text, hits) for text, (norm_text, hits) in zip(texts, evidence, strict=True)]
            through = range(len(views))
            if gate is not None and getattr(clf, "linear", None) is not None:
                cheap = clf.linear.predict_windows(views).max(axis=1)
                through = [k for k in through if evidence[k][1] or cheap[k] >= gate]
            order = sorted(through, key=lambda k: len(views[k]))
            for i in range(0, len(order), batch_size):
                idx = order[i : i + batch_size]
                chunk = clf.predict([views[k] for k in idx])
                if len(chunk) != len(idx):
                    raise ModerationError("classifier returned a different number of results than texts")
                for k, scores in zip(idx, chunk, strict=True):
                    model_scores[k] = {c: float(s) for c, s in scores.items() if c in CATEGORIES}
        version = self.model_version
        lexicon_version = self.lexicon.version + (f"+{org.lexicon.version}" if org is not None else "")
        return [
            self._verdict(text, hits, scores, policy, version, lexicon_version)
            for text, (_, hits), scores in zip(texts, evidence, model_scores, strict=True)
        ]

    @staticmethod
    def _verdict(
        original: str,
        hits: list[Hit],
        model: dict[str, float],
        policy: Policy,
        model_version: str,
        lexicon_version: str,
    ) -> Verdict:
        decision = policy.decide(model, hits)
        scores = dict(model)
        for h in hits:
            if h.list.endswith(GROUP_SUFFIX):
                continue  # a group named, nobody insulted: no score (the hit stays as evidence)
            floor = _BLOCK_SCORE if (h.severity == "block" or h.source == "pii") else _REVIEW_SCORE
            scores[h.category] = max(scores.get(h.category, 0.0), floor)
        all_hits = list(hits)
        # A model hit per category over its review threshold: the evidence is the whole text.
        for cat, score in sorted(model.items()):
            rev = policy.thresholds.get(cat, (None, None))[0]
            if rev is not None and score >= rev and cat not in policy.disabled and original:
                all_hits.append(Hit(cat, "model", cat, "model", 0, len(original), original, "review"))
        return Verdict(decision, scores, all_hits, model_version, lexicon_version)


_screeners: OrderedDict[ModerationConfig, Screener] = OrderedDict()
_screener_lock = threading.Lock()


def get_screener(config: ModerationConfig | None = None) -> Screener:
    """The process-wide screener for ``config`` (default: the process default set by :func:`configure`).

    Built on first use (lexicon compiled, classifier loaded lazily) and then reused: equal configurations
    share one screener.
    """
    key = config if config is not None else current_config()
    screener = _screeners.get(key)
    if screener is None:
        with _screener_lock:
            screener = _screeners.get(key)
            if screener is None:
                screener = _screeners[key] = Screener(config=key)
                while len(_screeners) > _SCREENER_CACHE_SIZE:
                    _screeners.popitem(last=False)
    return screener


def reset_screener() -> None:
    """Forget the process-wide screeners; the next :func:`get_screener` builds a fresh one (tests use this)."""
    with _screener_lock:
        _screeners.clear()


def configure(config: ModerationConfig) -> None:
    """Make ``config`` the process default and drop the screeners built so far.

    The application calls this once at start-up (worker process, API), before the first screen; the
    classifier it names is then loaded on first use (or eagerly through ``get_screener().classifier``).
    """
    _install(config)
    reset_screener()


def verdict_summary(verdict: Verdict) -> dict[str, Any]:
    """The JSONL output shape of the CLI without the id: decision, categories, hits."""
    d = verdict.to_dict()
    return {"decision": d["decision"], "categories": d["categories"], "hits": d["hits"]}
