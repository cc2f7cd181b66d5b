"""The evaluation report (``moderation.evaluate``): metrics, bootstrap intervals, systems side by side.

Small fixture sets with hand-counted answers; the transformer is replaced by a keyword scorer (the report's
arithmetic is what is tested here, not a model), the baseline is the real scikit-learn one.
"""

from __future__ import annotations

import numpy as np
import pytest

from moderation.dataset import MODEL_CATEGORIES, Example
from moderation.evaluate import (
    ScoredSet,
    _Scorers,
    bootstrap_ci,
    engine_flags,
    evaluate_scored,
    fit_baseline,
    format_report,
    main,
    prf,
    two_class_macro_f1,
)
from moderation.scorecache import TransformerCache
from moderation.types import Hit, Verdict

ABUSE = MODEL_CATEGORIES.index("abuse")


def test_prf_and_two_class_macro_f1_by_hand() -> None:
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    p = np.array([1, 1, 0, 1, 0, 0, 0, 0])
    r = prf(y, p)
    assert (r["tp"], r["fp"], r["fn"], r["tn"]) == (2, 1, 1, 4)
    assert r["precision"] == pytest.approx(2 / 3) and r["recall"] == pytest.approx(2 / 3)
    # negative class: tp 4, fp 1, fn 1 -> F1 0.8; positive F1 2/3
    assert two_class_macro_f1(y, p) == pytest.approx((2 / 3 + 0.8) / 2)
    assert prf(np.zeros(3), np.zeros(3))["f1"] == 0.0  # no positives at all: 0, not a division error


def _binary_set(y_abuse: list[int], flagged: list[int]) -> ScoredSet:
    y = np.zeros((len(y_abuse), len(MODEL_CATEGORIES)), dtype=bool)
    y[:, ABUSE] = y_abuse
    pred = np.zeros_like(y)
    pred[:, ABUSE] = flagged
    return ScoredSet(y, pred, np.array(flagged, dtype=bool))


def test_evaluate_scored_binary_figures_and_intervals() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    flagged = np.where(rng.random(400) < 0.8, y, 1 - y)  # 80 % right
    res = evaluate_scored(_binary_set(y.tolist(), flagged.tolist()), binary=True, resamples=300)
    assert res["macro_f1"] == pytest.approx(two_class_macro_f1(y, flagged))
    harmless = flagged[y == 0]
    assert res["harmless_flagged"] == pytest.approx(harmless.mean())
    assert res["n_harmless"] == int((y == 0).sum())
    for key in ("macro_f1", "harmless_flagged"):
        lo, hi = res[f"{key}_ci"]
        assert 0.0 <= lo < res[key] < hi <= 1.0
        assert hi - lo < 0.2  # 400 rows: a few points either side, not the whole range
    assert res["categories"]["abuse"]["tp"] == int(((y == 1) & (flagged == 1)).sum())


def test_bootstrap_is_deterministic_and_degenerate_sets_are_exact() -> None:
    perfect = _binary_set([1, 0, 1, 0, 1, 0], [1, 0, 1, 0, 1, 0])
    res = evaluate_scored(perfect, binary=True, resamples=200)
    assert res["macro_f1"] == 1.0 and res["macro_f1_ci"] == [1.0, 1.0]
    assert res["harmless_flagged"] == 0.0 and res["harmless_flagged_ci"] == [0.0, 0.0]
    stat = lambda i: np.arange(10.0)[i].mean(1)  # noqa: E731
    assert bootstrap_ci(stat, 10, 500, seed=3) == bootstrap_ci(stat, 10, 500, seed=3)
    assert all(np.isnan(bootstrap_ci(stat, 0)))


def test_category_set_macro_f1_is_the_mean_over_labelled_categories() -> None:
    cats = {"porn": MODEL_CATEGORIES.index("porn"), "ads": MODEL_CATEGORIES.index("ads")}
    y = np.zeros((6, len(MODEL_CATEGORIES)), dtype=bool)
    y[[0, 1], cats["porn"]] = True
    y[[2, 3], cats["ads"]] = True
    pred = np.zeros_like(y)
    pred[[0, 1, 4], cats["porn"]] = True  # porn: P 2/3, R 1 -> F1 0.8
    pred[[2], cats["ads"]] = True  # ads: P 1, R 1/2 -> F1 2/3
    sources = ["derived-porn", "derived-porn", "derived-ads", "derived-ads", "derived-news", "derived-antibias"]
    res = evaluate_scored(ScoredSet(y, pred, pred.any(axis=1), sources), binary=False, resamples=200)
    assert set(res["categories"]) == {"porn", "ads"}
    assert res["macro_f1"] == pytest.approx((0.8 + 2 / 3) / 2)
    assert res["harmless_flagged"] == pytest.approx(0.5)  # row 4 of the two unlabelled rows
    assert res["harmless_flagged_by_source"] == {
        "derived-antibias": {"n": 1, "flagged": 0.0},
        "derived-news": {"n": 1, "flagged": 1.0},
    }
    lo, hi = res["macro_f1_ci"]
    assert 0.0 <= lo <= hi <= 1.0


def test_engine_flags_ignore_group_words_and_passed_texts() -> None:
    group = Hit("abuse", "lexicon", "河南人", "core~group", 0, 3, "河南人", "review")
    insult = Hit("abuse", "lexicon", "傻逼", "core", 0, 2, "傻逼", "block")
    phone = Hit("privacy", "pii", "mobile", "pii", 0, 11, "13800138000", "review")
    ads = Hit("ads", "model", "ads", "model", 0, 5, "加微信看看", "review")
    verdicts = [
        Verdict("pass", hits=[group]),
        Verdict("reject", hits=[group, insult]),
        Verdict("review", hits=[phone, ads]),
        Verdict("review", hits=[group, phone]),
    ]
    pred, flagged = engine_flags(verdicts)
    assert flagged.tolist() == [False, True, True, True]
    assert pred[:, ABUSE].tolist() == [False, True, False, False]
    assert pred[:, MODEL_CATEGORIES.index("ads")].tolist() == [False, False, True, False]


# ------------------------------------------------------------------ the systems side by side, end to end

TRAIN = {
    "politics": ["打倒政府，推翻统治", "推翻统治的口号", "打倒政府万岁"],
    "porn": ["色情视频免费看", "成人色情视频", "色情图片下载"],
    "violence": ["出售枪支弹药", "枪支弹药便宜", "自制炸弹教程"],
    "gambling": ["网上赌场注册送彩金", "赌场彩金翻倍", "百家乐赌场"],
    "fraud": ["代开发票联系我", "办假证代开发票", "代开发票包过"],
    "ads": ["加微信领福利", "加微信日结", "私聊加微信"],
    "abuse": ["你这个傻逼", "傻逼滚开", "一群傻逼"],
}
HARMLESS = ["今天天气很好", "社区组织植树活动", "工会举办职工运动会", "欢迎报名参加比赛", "明天上午停水检修"]


def _train_rows() -> list[Example]:
    rows = [Example(t, {cat: 1}, "derived-" + cat, "train") for cat, texts in TRAIN.items() for t in texts]
    return rows + [Example(t, {}, "derived-news", "train") for t in HARMLESS]


class KeywordModel:
    """Stands in for the transformer: abuse 0.9 when the text has 傻逼, else 0.1 (and 0.0 elsewhere)."""

    version = transformer_version = "kw-1"
    thresholds = {"abuse": 0.5}
    linear = None

    def transformer_scores(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), len(MODEL_CATEGORIES)), dtype=np.float32)
        out[:, ABUSE] = [0.9 if "傻逼" in t or "煞笔" in t else 0.1 for t in texts]
        return out

    def combine(self, transformer: np.ndarray, texts: list[str]) -> np.ndarray:
        return np.asarray(transformer, dtype=np.float64)


def test_report_has_every_system_and_right_figures(tmp_path) -> None:
    model = KeywordModel()
    cache = TransformerCache(tmp_path / "kw.npz", len(MODEL_CATEGORIES), model.transformer_scores)
    scorers = _Scorers(model, cache, fit_baseline(_train_rows()), {"transformer": model.thresholds, "linear": {}})
    rows = [
        Example("你这个煞笔", {"abuse": 1}, "cold", "dev"),  # model yes; lexicon: sound-alike review
        Example("大家好，我是新来的", {"abuse": 1}, "cold", "dev"),  # nobody catches it
        Example("今天天气很好，出去走走", {"abuse": 0}, "cold", "dev"),
        Example("请联系 13800138000 报名", {"abuse": 0}, "cold", "dev"),  # personal data: the engine flags it
    ]
    got = scorers.run(rows)
    assert {"engine", "classifier", "baseline"} <= set(got)
    assert got["classifier"].flagged.tolist() == [True, False, False, False]
    assert got["engine"].flagged.tolist() == [True, False, False, True]
    res = {k: evaluate_scored(v, binary=True, resamples=100) for k, v in got.items()}
    assert res["classifier"]["harmless_flagged"] == 0.0 and res["engine"]["harmless_flagged"] == 0.5
    # engine: tp 1, fn 1, fp 1, tn 1 -> both classes F1 0.5
    assert res["engine"]["macro_f1"] == pytest.approx(0.5)
    assert res["classifier"]["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    # scores were cached by the text the engine's classifier reads: a second run computes nothing
    cache.score_fn = None  # type: ignore[assignment]
    again = scorers.run(rows)
    assert again["classifier"].flagged.tolist() == got["classifier"].flagged.tolist()
    report = {
        "model_version": "kw-1",
        "quantize": False,
        "bootstrap_resamples": 100,
        "limit": None,
        "sets": {"cold-dev": {"n": 4, "systems": res}},
    }
    text = format_report(report)
    assert "baseline" in text and "engine" in text and "harmless flagged" in text


class LowThresholdModel(KeywordModel):
    """Abuse 0.3 for a text no lexicon lists (新来的), with its own threshold 0.25: under the policy's default
    0.5 band it would pass."""

    thresholds = {"abuse": 0.25}

    def transformer_scores(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), len(MODEL_CATEGORIES)), dtype=np.float32)
        out[:, ABUSE] = [0.3 if "新来的" in t else 0.0 for t in texts]
        return out


def test_engine_adopts_the_classifiers_thresholds_as_the_shipped_screener_does(tmp_path) -> None:
    model = LowThresholdModel()
    cache = TransformerCache(tmp_path / "low.npz", len(MODEL_CATEGORIES), model.transformer_scores)
    scorers = _Scorers(model, cache, None, {"transformer": model.thresholds, "linear": {}})
    rows = [
        Example("你就是个新来的", {"abuse": 1}, "cold", "dev"),
        Example("今天天气很好", {"abuse": 0}, "cold", "dev"),
    ]
    got = scorers.run(rows)
    assert got["classifier"].flagged.tolist() == [True, False]
    assert got["engine"].flagged.tolist() == [True, False]  # 0.3 >= 0.25: review, as in production


def test_cli_rejects_unknown_sets_with_one_line(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--sets", "cold-dev,nonsense"])
    assert exc.value.code == 2
    assert "unknown set(s) nonsense" in capsys.readouterr().err
