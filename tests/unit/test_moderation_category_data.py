"""The team's category families (``moderation.category_data``), the disguised training copies
(``moderation.disguise.training_copies``) and the per-category weight choice of ``moderation.train_linear``."""

from __future__ import annotations

from collections import Counter

import pytest

from moderation.category_data import (
    FAMILIES,
    TEAM_SET_FILE,
    category_examples,
    disguise_keywords,
    load_team_set,
    team_set_rows,
    write_team_set,
)
from moderation.dataset import DatasetError
from moderation.disguise import TRAIN_STYLES, training_copies
from moderation.evaluate import load_sets
from moderation.train_linear import choose_weights

CATEGORIES = ("gambling", "porn", "fraud", "ads", "violence", "politics")


def test_every_category_has_train_and_held_out_families_and_hard_negatives() -> None:
    for cat in CATEGORIES:
        fams = [f for f in FAMILIES if f.labels and f.labels[0] == cat]
        assert sum(not f.held_out for f in fams) >= 3, cat
        assert sum(f.held_out for f in fams) >= 2, cat
    negatives = [f for f in FAMILIES if not f.labels]
    assert sum(not f.held_out for f in negatives) >= 5 and sum(f.held_out for f in negatives) >= 3
    assert len({f.name for f in FAMILIES}) == len(FAMILIES)


def test_held_out_families_never_reach_training() -> None:
    train = category_examples()
    held = {f.name for f in FAMILIES if f.held_out}
    assert not {e.meta["family"] for e in train} & held
    assert {e.split for e in train} == {"train", "select"}
    test_texts = {t for t, _, _ in team_set_rows()}
    assert not test_texts & {e.text for e in train}
    share = Counter(e.split for e in train)
    assert 0.05 < share["select"] / len(train) < 0.15


def test_shipped_team_set_is_the_one_the_families_make(tmp_path) -> None:
    shipped = load_team_set()
    assert [(e.text, tuple(sorted(e.labels)), e.meta["family"]) for e in shipped] == [
        (t, tuple(sorted(labels)), fam) for t, labels, fam in team_set_rows()
    ]
    assert {e.split for e in shipped} == {"test"}
    # each held-out category family and each held-out negative family is in the file
    assert {e.meta["family"] for e in shipped} == {f.name for f in FAMILIES if f.held_out}
    assert write_team_set(tmp_path / "t.tsv") == len(shipped)
    assert (tmp_path / "t.tsv").read_text(encoding="utf-8") == TEAM_SET_FILE.read_text(encoding="utf-8")


def test_texts_are_deterministic_and_the_issue_examples_are_covered() -> None:
    a, b = category_examples(), category_examples()
    assert [e.text for e in a] == [e.text for e in b]
    texts = " ".join(e.text for e in a)
    for phrase in ("日结", "手机就能做", "稳赚不赔", "带你上岸", "同城约", "看头像"):
        assert phrase in texts, phrase
    assert any("低价代开发票" in e.text for e in load_team_set())  # held out: 代开发票 only in the test families
    # 刷单 is an illicit ad and a fraud
    assert all(e.labels == {"ads": 1, "fraud": 1} for e in a if e.meta["family"] == "ads/brushing")


def test_bad_team_set_file_is_a_dataset_error(tmp_path) -> None:
    bad = tmp_path / "bad.tsv"
    bad.write_text("text\tlabels\tfamily\n加微信\tspam\tx\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"bad.tsv:2"):
        load_team_set(bad)
    with pytest.raises(DatasetError, match="not found"):
        load_team_set(tmp_path / "missing.tsv")


def test_evaluate_reads_the_team_set() -> None:
    sets = load_sets([], ["team-categories"], limit=50)
    rows = sets["team-categories"]
    assert len(rows) == 50 and all(e.source.startswith("team-test:") for e in rows)


def test_training_copies_disguise_keywords_or_a_random_word() -> None:
    texts = ["你就是个傻逼吧", "今天天气很好", "ok"]
    copies = training_copies(texts, ["傻逼"])
    assert copies == training_copies(texts, ["傻逼"])  # deterministic
    by_index = {i: (style, copy) for i, style, copy in copies}
    assert set(by_index) == {0, 1}  # "ok" has nothing to disguise
    style, copy = by_index[0]
    assert style in TRAIN_STYLES and "傻逼" not in copy and copy.startswith("你就是个") and copy.endswith("吧")
    _, harmless = by_index[1]
    assert harmless != texts[1] and sum(c != d for c, d in zip(harmless, texts[1], strict=False)) >= 1
    assert "工会" not in disguise_keywords() and "上岸" in disguise_keywords()


def test_weights_are_chosen_per_category_with_ties_to_the_middle() -> None:
    def row(cold: float, ads: float) -> dict:
        per = {c: 1.0 for c in ("politics", "porn", "violence", "gambling", "fraud", "abuse")}
        return {"cold_macro_f1": cold, "per_category_f1": per | {"ads": ads}}

    got = choose_weights({"1.0": row(0.85, 0.5), "0.5": row(0.89, 0.7), "0.25": row(0.90, 0.7), "0.0": row(0.88, 0.9)})
    assert got["abuse"] == 0.25  # best COLD macro-F1
    assert got["ads"] == 0.0  # best ads F1
    assert got["porn"] == 0.5  # all tied: the middle weight


def test_the_spam_the_issue_names_has_several_train_families_and_negatives_use_its_words() -> None:
    train = [f for f in FAMILIES if not f.held_out]
    pools = {f.name: " ".join(p for pool in f.slots for p in pool) for f in train}

    def families_with(*words: str, negative: bool = False) -> list[str]:
        return [n for n, text in pools.items() if any(w in text for w in words) and n.startswith("neg/") == negative]

    assert len(families_with("刷单", "垫付", "做任务")) >= 2
    assert len(families_with("日结", "当天结", "一单一结", "当天结清")) >= 3
    assert len(families_with("代发")) >= 1
    assert len(families_with("{wx}", "加我", "V上", "绿色软件")) >= 10
    assert len([n for n in pools if n.startswith("gambling/")]) >= 8
    assert len([n for n in pools if n.startswith("porn/")]) >= 7
    assert len([n for n in pools if n.startswith("fraud/")]) >= 10
    # hard negatives that use the same words legitimately: job fairs, legal aid, anti-fraud warnings
    assert families_with("日结", "按日结算", negative=True)
    assert families_with("微信群", "微信", negative=True)
    assert families_with("刷单", "稳赚不赔", negative=True)
    assert families_with("法律援助", negative=True)
    # every train family yields its full share of distinct texts (its pools are not too small)
    sizes = Counter(e.meta["family"] for e in category_examples())
    assert all(sizes[f.name] == 160 for f in train), [f.name for f in train if sizes[f.name] != 160]
