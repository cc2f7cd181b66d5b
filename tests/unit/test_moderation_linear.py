"""The linear second scorer (``moderation.linear``): exactly scikit-learn's function, stored as arrays, loaded
offline, and combined with the transformer as at training time."""

from __future__ import annotations

import json

import numpy as np
import pytest

from moderation.classifier import CONFIG_FILE, DEFAULT_MODEL_DIR, MODEL_CATEGORIES, Classifier, ClassifierError
from moderation.linear import LINEAR_FILE, LinearModelError, LinearScorer, char_ngrams
from moderation.train_linear import fit_sklearn, to_scorer

TEXTS = [
    "你这个傻逼，滚开",
    "傻逼一个，恶心",
    "一群傻逼在吵架",
    "今天天气很好",
    "社区组织了植树活动",
    "工会举办职工运动会",
    "加微信领福利，日结",
    "加微信 abc123 了解详情",
    "明天上午停水检修",
    "欢迎报名参加比赛",
]
ABUSE = [1, 1, 1, 0, 0, 0, 0, 0, 0, 0]
ADS = [0, 0, 0, 0, 0, 0, 1, 1, 0, 0]
UNSEEN = ["傻逼们好", "天气不错，加微信聊", "ABC  def\t全新的句子", "", "😀"]


def test_char_ngrams_lowercase_and_collapse_whitespace() -> None:
    assert char_ngrams("Ab  c") == ["a", "b", " ", "c", "ab", "b ", " c", "ab ", "b c"]
    assert char_ngrams("") == []


@pytest.fixture(scope="module")
def fitted():
    y = np.array([ABUSE, ADS]).T
    vec, models = fit_sklearn(TEXTS, y, c=4.0, max_features=500)
    return vec, models, to_scorer(vec, models, ("abuse", "ads"))


def test_scores_equal_scikit_learn(fitted) -> None:
    vec, models, scorer = fitted
    x = vec.transform(UNSEEN + TEXTS)
    expected = np.stack([m.predict_proba(x)[:, 1] for m in models], axis=1)
    # coefficients are stored in float32: the only difference allowed is that rounding
    np.testing.assert_allclose(scorer.predict_array(UNSEEN + TEXTS), expected, atol=1e-6, rtol=0)
    assert scorer.predict(["傻逼"])[0].keys() == {"abuse", "ads"}
    assert scorer.predict_array(["傻逼们"])[0, 0] > scorer.predict_array(["天气很好"])[0, 0]


def test_saved_file_loads_to_the_same_scores_and_catches_damage(fitted, tmp_path) -> None:
    _, _, scorer = fitted
    path = tmp_path / LINEAR_FILE
    scorer.save(path, UNSEEN)
    loaded = LinearScorer.load(path)  # verifies the stored check scores
    np.testing.assert_array_equal(loaded.predict_array(TEXTS), scorer.predict_array(TEXTS))
    with np.load(path) as z:
        data = {k: z[k] for k in z.files}
    data["coef"] = data["coef"] * 1.5
    np.savez(path, **data)
    with pytest.raises(LinearModelError, match="training-time scores"):
        LinearScorer.load(path)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(LinearModelError, match="cannot read"):
        LinearScorer.load(tmp_path / "bad.npz")


def test_long_texts_keep_the_worst_window(fitted) -> None:
    _, _, scorer = fitted
    filler = "社区组织了植树活动，工会举办职工运动会。" * 40  # 800 characters of harmless text
    alone, buried, clean = scorer.predict_windows(["你这个傻逼，滚开", filler + "你这个傻逼，滚开", filler])[:, 0]
    whole = scorer.predict_array([filler + "你这个傻逼，滚开"])[0, 0]
    # TF-IDF over the whole text would dilute the insult
    assert buried > clean + 0.1 and buried > whole and alone > buried
    np.testing.assert_array_equal(scorer.predict_windows(TEXTS), scorer.predict_array(TEXTS))  # short: as trained


def _shipped_combine() -> dict | None:
    meta = json.loads((DEFAULT_MODEL_DIR / CONFIG_FILE).read_text(encoding="utf-8"))
    return meta.get("combine")


@pytest.mark.skipif(_shipped_combine() is None, reason="the shipped model does not combine a linear scorer")
def test_shipped_combination_reproduces_training_time_scores() -> None:
    combine = _shipped_combine()
    assert combine is not None
    scorer = LinearScorer.load(DEFAULT_MODEL_DIR / combine["file"])  # offline: numpy only
    assert scorer.categories == MODEL_CATEGORIES
    # the combination arithmetic of the classifier itself, on the transformer scores recorded at training
    per_cat = combine.get("transformer_weights")
    weight = [per_cat[c] for c in MODEL_CATEGORIES] if per_cat else combine["transformer_weight"]
    clf = Classifier(None, None, None, MODEL_CATEGORIES, "t", linear=scorer, transformer_weight=weight)
    check = combine["check"]
    got = clf.combine(np.array(check["transformer"]), check["texts"])
    np.testing.assert_allclose(got, np.array(check["scores"]), atol=1e-9, rtol=0)
    assert 0.0 <= min(np.atleast_1d(weight)) and max(np.atleast_1d(weight)) <= 1.0
    assert 0.0 < combine["transformer_weight"] < 1.0  # on average the two halves are both used
    assert set(combine["thresholds"]) == set(MODEL_CATEGORIES)


def test_per_category_weights_mix_each_column_on_its_own(fitted) -> None:
    _, _, scorer = fitted
    texts = ["傻逼们好", "加微信聊"]
    transformer = np.array([[0.9, 0.2], [0.1, 0.8]])
    linear = scorer.predict_windows(texts)
    clf = Classifier(None, None, None, ("abuse", "ads"), "t", linear=scorer, transformer_weight=[1.0, 0.0])
    got = clf.combine(transformer, texts)
    np.testing.assert_allclose(got[:, 0], transformer[:, 0])  # abuse: the transformer alone
    np.testing.assert_allclose(got[:, 1], linear[:, 1])  # ads: the linear scorer alone
    with pytest.raises(ClassifierError, match="3 transformer weights for 2 categories"):
        Classifier(None, None, None, ("abuse", "ads"), "t", linear=scorer, transformer_weight=[0.5, 0.5, 0.5])
