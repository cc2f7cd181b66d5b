"""The evaluation script's metrics and set loading (monitor.evaluate), on small fixtures with known answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor import evaluate
from monitor.evaluate import EvaluationError, binary_scores, bootstrap, load_tsv, needs_scores


def test_binary_scores_by_hand() -> None:
    gold = [True, True, True, False, False]
    pred = [True, False, True, True, False]  # tp 2, fn 1, fp 1, tn 1
    s = binary_scores(gold, pred)
    assert s["accuracy"] == pytest.approx(3 / 5)
    assert s["precision"] == pytest.approx(2 / 3)
    assert s["recall"] == pytest.approx(2 / 3)
    assert s["f1"] == pytest.approx(2 / 3)
    assert binary_scores([True, False], [False, False])["precision"] == 0.0  # nothing predicted: 0, no crash


def test_needs_scores_count_each_predicted_need_once_per_text() -> None:
    gold = ["wages", "wages", "hours", "none"]
    pred = [{"wages"}, set(), {"hours", "wages"}, set()]
    s = needs_scores(gold, pred)
    assert s["wages.precision"] == pytest.approx(1 / 2) and s["wages.recall"] == pytest.approx(1 / 2)
    assert s["hours.precision"] == 1.0 and s["hours.recall"] == 1.0
    assert s["none.precision"] == pytest.approx(1 / 2) and s["none.recall"] == 1.0
    # macro over the eight needs: wages 0.5, hours 1.0, the six others absent and never predicted (0)
    assert s["macro_f1"] == pytest.approx((0.5 + 1.0) / 8)


def test_bootstrap_interval_brackets_the_value_and_is_seeded() -> None:
    gold = [True] * 10 + [False] * 10
    pred = [True] * 7 + [False] * 3 + [False] * 8 + [True] * 2
    a = bootstrap(gold, pred, binary_scores, resamples=200, seed=1)
    b = bootstrap(gold, pred, binary_scores, resamples=200, seed=1)
    assert a == b
    acc = a["accuracy"]
    assert acc.value == pytest.approx(0.75)
    assert acc.low <= acc.value <= acc.high and acc.low < acc.high


def test_a_fixture_of_texts_through_the_real_scorers(tmp_path: Path) -> None:
    path = tmp_path / "neg.tsv"
    path.write_text(
        "# a comment\nlabel\ttext\nneg\t老板拖欠工资，工人们很愤怒\nother\t工会表彰先进职工，大家很高兴\n",
        encoding="utf-8",
    )
    rows = load_tsv(path, ("neg", "other"))
    assert [label for label, _ in rows] == ["neg", "other"]
    result = evaluate.evaluate_negativity(rows, resamples=20)
    assert result["accuracy"].value == 1.0
    needs = evaluate.evaluate_needs([("wages", "某厂拖欠工资三个月"), ("none", "今天天气很好")], resamples=20)
    assert needs["wages.recall"].value == 1.0 and needs["none.precision"].value == 1.0


def test_bad_sets_are_refused_with_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.tsv"
    path.write_text("neg\tok\nmaybe\tunknown label\n", encoding="utf-8")
    with pytest.raises(EvaluationError, match=r"bad.tsv:2: unknown label 'maybe'"):
        load_tsv(path, ("neg", "other"))
    with pytest.raises(EvaluationError, match="cannot read"):
        load_tsv(tmp_path / "missing.tsv", ("neg",))


def test_the_shipped_sets_load() -> None:
    assert len(load_tsv(evaluate.NEGATIVITY_SET, ("neg", "other"))) >= 100
    rows = load_tsv(evaluate.NEEDS_SET, (*evaluate.NEED_KEYS, evaluate.NONE))
    assert len(rows) >= 150 and {label for label, _ in rows} == {*evaluate.NEED_KEYS, evaluate.NONE}
