"""Policy decisions, overrides, and the engine's combination of rules and model scores."""

from __future__ import annotations

import pytest

import moderation
from moderation.engine import Screener
from moderation.lexicon import Entry, Lexicon
from moderation.policy import Policy
from moderation.types import Hit, ModerationError, PolicyError, Verdict

pytestmark = pytest.mark.usefixtures("rules_only")  # tests/conftest.py: lexicon and PII rules, no classifier


def hit(category: str, source: str = "lexicon", severity: str = "review") -> Hit:
    return Hit(category, source, "t", "l", 0, 1, "t", severity)  # type: ignore[arg-type]


def test_default_decisions() -> None:
    p = Policy.default()
    assert p.decide({}, []) == "pass"
    assert p.decide({}, [hit("abuse", severity="block")]) == "reject"
    assert p.decide({}, [hit("ads", severity="review")]) == "review"
    assert p.decide({}, [hit("privacy", source="pii")]) == "review"
    assert p.decide({"abuse": 0.49}, []) == "pass"
    assert p.decide({"abuse": 0.5}, []) == "review"
    assert p.decide({"abuse": 0.95}, []) == "review"  # abuse never rejects on a score alone: a person decides
    assert p.decide({"porn": 0.95}, []) == "reject"
    assert p.decide({"ads": 0.99}, []) == "review"  # ads never reject on a score alone
    assert p.decide({"porn": 0.95}, [hit("privacy", source="pii")]) == "reject"  # strictest wins


def test_overrides_layer_org_then_channel() -> None:
    org = Policy.default().with_overrides(
        {"thresholds": {"abuse": {"review": 0.3}}, "pii_action": "reject", "disabled": ["ads"]}
    )
    assert org.decide({"abuse": 0.35}, []) == "review"
    assert org.decide({}, [hit("privacy", source="pii")]) == "reject"
    assert org.decide({"ads": 0.9}, [hit("ads", severity="block")]) == "pass"
    channel = org.with_overrides({"thresholds": {"abuse": {"reject": 0.6}}, "enabled": ["ads"]})
    assert channel.decide({"abuse": 0.65}, []) == "reject"
    assert channel.decide({}, [hit("ads", severity="review")]) == "review"
    assert channel.thresholds["abuse"] == (0.3, 0.6)
    # the original is untouched (immutable)
    assert Policy.default().thresholds["abuse"] == (0.5, None)
    soft = Policy.default().with_overrides({"block_action": "review"})
    assert soft.decide({}, [hit("porn", severity="block")]) == "review"
    never = Policy.default().with_overrides({"thresholds": {"politics": {"reject": None}}})
    assert never.decide({"politics": 1.0}, []) == "review"


@pytest.mark.parametrize(
    "bad",
    [
        {"thresholds": {"nonsense": {"review": 0.1}}},
        {"thresholds": {"abuse": {"review": 1.5}}},
        {"thresholds": {"abuse": {"review": 0.9, "reject": 0.2}}},
        {"thresholds": {"abuse": 0.5}},
        {"pii_action": "explode"},
        {"disabled": ["nope"]},
        {"unknown_key": 1},
    ],
)
def test_invalid_overrides(bad: dict) -> None:
    with pytest.raises(PolicyError):
        Policy.default().with_overrides(bad)


class FakeClassifier:
    """A deterministic stand-in for moderation.classifier: scores by keyword, records what it saw."""

    version = "fake-1"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def predict(self, texts: list[str]) -> list[dict[str, float]]:
        self.seen.extend(texts)
        return [{"abuse": 0.97 if "蠢货" in t else 0.1, "porn": 0.55 if "暧昧" in t else 0.0} for t in texts]


def test_engine_combines_model_and_rules() -> None:
    clf = FakeClassifier()
    s = Screener(lexicon=Lexicon([Entry("坏词", "custom", "block")], version="t1"), classifier=clf)
    v1, v2, v3, v4 = s.screen_batch(["你这个蠢.货", "有点暧昧", "坏词", "今天开会"])
    # a model-only abuse score goes to a person; a block-severity lexicon hit rejects
    assert (v1.decision, v2.decision, v3.decision, v4.decision) == ("review", "review", "reject", "pass")
    assert v1.model_version == "fake-1" and v1.lexicon_version == "t1"
    assert "你这个蠢货" in clf.seen  # the model sees the normalised text (disguise removed)
    # with a lexicon that knows the term, sound-alike and pinyin spellings reach the model spelled plainly
    s2 = Screener(lexicon=moderation.get_screener().lexicon, classifier=clf)
    s2.screen_batch(["你是沙币吗", "你个sha逼"])
    # screen_batch sends texts sorted by length (less padding): the order the model saw them in is its own
    assert sorted(clf.seen[-2:]) == sorted(["你是傻逼吗", "你个傻逼"])
    (model_hit,) = [h for h in v2.hits if h.source == "model"]
    assert model_hit.category == "porn" and model_hit.text == "有点暧昧"
    assert v3.categories["custom"] == 1.0
    assert Verdict.from_dict(v1.to_dict()) == v1


def test_rules_only_when_setting_off() -> None:
    v = moderation.screen("今天开会")
    assert v.model_version == "none" and v.decision == "pass"


def test_verdict_from_bad_dict() -> None:
    with pytest.raises(ModerationError):
        Verdict.from_dict({"decision": "maybe"})
    with pytest.raises(ModerationError):
        moderation.screen(123)  # type: ignore[arg-type]


def test_default_policy_adopts_model_thresholds() -> None:
    clf = FakeClassifier()
    clf.thresholds = {"porn": 0.3, "violence": 0.99, "unknown": 0.2, "ads": {"fp32": 0.4}}  # type: ignore[attr-defined]
    from moderation.engine import _with_model_thresholds

    p = _with_model_thresholds(Policy.default(), clf)  # type: ignore[arg-type]
    assert p.thresholds["porn"] == (0.3, 0.9)
    assert p.thresholds["violence"] == (0.5, 0.9)  # above the reject threshold: not adopted
    assert p.thresholds["ads"] == (0.6, None)  # not a number: ignored
    explicit = Screener(lexicon=Lexicon([], version="t"), classifier=clf, policy=Policy.default())
    assert explicit.policy.thresholds["porn"] == (0.5, 0.9)
    assert moderation.default_policy().thresholds == Policy.default().thresholds  # rules only: defaults
