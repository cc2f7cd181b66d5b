"""What keeps a process with the classifier small (issue 14: resident memory), checked on bytes, not on RSS.

* the linear scorer holds its vocabulary as sorted ``uint64`` keys and its coefficients in float32, with no
  Python object per n-gram, and still scores bit-identically to the former ``dict`` + ``Counter`` + float64
  form (re-implemented here from the formula, as the reference);
* the loaded int8 encoder keeps no view of its safetensors file: such a view kept the file's memory map, and
  with it the int8 weights read while loading, resident beside fbgemm's packed copy.
"""

from __future__ import annotations

import gc
import math
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from moderation.classifier import DEFAULT_MODEL_DIR
from moderation.linear import LINEAR_FILE, LinearModelError, LinearScorer, _text_keys, char_ngrams, ngram_keys
from moderation.train_linear import fit_sklearn, to_scorer

ROOT = Path(__file__).resolve().parents[2]
# Odd inputs for the key arithmetic: case, whitespace runs, full-width and astral characters, a NUL, a lone
# surrogate, characters whose lower case is longer ("İ"), and texts shorter than the longest n-gram.
ODD = [
    "",
    "a",
    "ab",
    "Ab  c\t\nD",
    "İstanbul ǅ ẞ",
    "😀😀x😀",
    "𠀀𪚥 extension B",
    "a\x00b\x00",
    "lone \ud800 surrogate",
    "ＡＢＣ１２３，全角",
    "加微信 abc123 了解详情，日结三百",
    "傻逼" * 200,
]


def _dict_scores(scorer: LinearScorer, texts: list[str]) -> np.ndarray:
    """The scorer's function as it was computed before the array form: a dict from n-gram to column, a
    ``Counter`` in order of first occurrence, ``math.log`` and a float64 coefficient table."""
    index = {g: i for i, g in enumerate(scorer.vocabulary())}
    coef_t = scorer.coef_t.astype(np.float64)
    out = np.empty((len(texts), len(scorer.categories)))
    for row, text in enumerate(texts):
        counts = Counter(g for g in char_ngrams(text, *scorer.ngram) if g in index)
        z = scorer.intercept.copy()
        if counts:
            idx = np.fromiter((index[g] for g in counts), dtype=np.int64, count=len(counts))
            tf = np.fromiter((1.0 + math.log(c) for c in counts.values()), dtype=np.float64, count=len(counts))
            val = tf * scorer.idf[idx]
            val = val / np.sqrt(val @ val)
            z = scorer.intercept + val @ coef_t[idx]
        out[row] = z
    return 1.0 / (1.0 + np.exp(-out))


def _real_texts(n: int = 600) -> list[str]:
    """Texts of tests/data (union news dev), the team's category training set (in the repository, so a clone
    anywhere has 100+) and, where present, COLD train rows: no test split."""
    texts = [t for t in (ROOT / "tests/data/moderation_union_news_dev.txt").read_text("utf-8").splitlines() if t]
    team = (ROOT / "moderation/data/team_categories.tsv").read_text("utf-8").splitlines()
    texts += [line.split("\t", 1)[0] for line in team[1:201] if line and not line.startswith("#")]
    cold = ROOT.parent / "shared" / "datasets" / "COLD" / "train.csv"
    if cold.is_file():
        import csv

        with cold.open(encoding="utf-8") as fh:
            texts += [r["TEXT"] for _, r in zip(range(n), csv.DictReader(fh), strict=False)]
    return texts[:n] + ODD


@pytest.fixture(scope="module")
def shipped() -> LinearScorer:
    return LinearScorer.load(DEFAULT_MODEL_DIR / LINEAR_FILE)


def test_text_keys_are_the_keys_of_char_ngrams() -> None:
    for lo, hi in ((1, 3), (2, 3), (1, 1), (3, 3)):
        for text in ODD:
            np.testing.assert_array_equal(_text_keys(text, lo, hi), ngram_keys(char_ngrams(text, lo, hi)))


def test_keys_of_a_string_array_equal_the_keys_of_its_strings() -> None:
    vocab = ["a", "ab", "abc", "😀", "a\x00b", "\x00", "傻逼", " ", "𠀀x"]
    arr = np.array(vocab, dtype=str)
    np.testing.assert_array_equal(ngram_keys(arr), ngram_keys([str(g) for g in arr]))
    assert len(set(ngram_keys(vocab).tolist())) == len(vocab)  # "a\x00b", "\x00" and "a" stay apart
    with pytest.raises(LinearModelError, match="longer than 3"):
        ngram_keys(["abcd"])


def test_shipped_scorer_scores_as_the_dict_form_bit_for_bit(shipped: LinearScorer) -> None:
    texts = _real_texts()
    assert len(texts) >= 100
    np.testing.assert_array_equal(shipped.predict_array(texts), _dict_scores(shipped, texts))


def test_fitted_scorer_keeps_its_vocabulary_and_the_coefficients_dtype() -> None:
    texts = ["你这个傻逼，滚开", "今天天气很好", "加微信领福利，日结", "工会举办职工运动会", "ABC  def😀"]
    vec, models = fit_sklearn(texts, np.array([[1, 0, 0, 0, 0], [0, 0, 1, 0, 0]]).T, c=4.0, max_features=200)
    scorer = to_scorer(vec, models, ("abuse", "ads"))
    assert scorer.vocabulary() == [str(g) for g in vec.get_feature_names_out()]
    np.testing.assert_array_equal(scorer.predict_array(texts + ODD), _dict_scores(scorer, texts + ODD))
    # float64 coefficients are used as given (not rounded to float32 in memory)
    wide = np.array([m.coef_[0] for m in models])
    as_given = LinearScorer(scorer.vocabulary(), scorer.idf, wide, scorer.intercept, scorer.categories)
    assert as_given.coef_t.dtype == np.float64
    np.testing.assert_array_equal(as_given.coef_t, wide.T)


def test_shipped_scorer_holds_no_object_per_ngram(shipped: LinearScorer) -> None:
    n = len(shipped)
    assert n > 10_000
    # key (8) + column (4) + idf (8) + one float32 coefficient per category: nothing else grows with n
    assert shipped.nbytes() <= n * (8 + 4 + 8 + 4 * len(shipped.categories)) + 1024
    assert shipped.coef_t.dtype == np.float32
    for name, value in vars(shipped).items():
        if isinstance(value, (dict, list, tuple, set)):
            assert len(value) < 100, f"LinearScorer.{name} holds {len(value)} Python objects"


def test_bad_vocabularies_are_refused() -> None:
    coef, idf = np.zeros((1, 2)), np.ones(2)
    with pytest.raises(LinearModelError, match="repeats"):
        LinearScorer(["ab", "ab"], idf, coef, np.zeros(1), ["abuse"])
    with pytest.raises(LinearModelError, match="n-gram range"):
        LinearScorer(["ab", "cd"], idf, coef, np.zeros(1), ["abuse"], ngram=(1, 4))


def _file_mappings(path: Path) -> list[tuple[int, int]]:
    """Address ranges of this process's memory maps of ``path`` (Linux)."""
    ranges = []
    with open("/proc/self/maps", encoding="utf-8") as fh:
        for line in fh:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[5].strip() == str(path):
                lo, hi = fields[0].split("-")
                ranges.append((int(lo, 16), int(hi, 16)))
    return ranges


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_loaded_encoder_keeps_no_view_of_its_weights_file() -> None:
    import torch

    from moderation import ModerationConfig
    from moderation.fast_encoder import WEIGHTS, Int8Linear, load_runtime, runtime_dir

    path = runtime_dir(ModerationConfig())
    _, model, _ = load_runtime(path)
    gc.collect()
    weights = (path / WEIGHTS).resolve()
    kept = [t for _, t in model.named_parameters()] + [t for _, t in model.named_buffers()]
    packed = [m for m in model.modules() if isinstance(m, Int8Linear)]
    assert len(packed) == 6 * model.config.num_hidden_layers
    for m in packed:
        assert not [v for v in vars(m).values() if isinstance(v, torch.Tensor)]  # the packed form only
        kept.append(torch.ops.quantized.linear_unpack(m._packed)[1])  # the bias fbgemm keeps
    # a view of the file would hold its whole map resident (the int8 weights read while packing: ~20 MB)
    assert _file_mappings(weights) == [], "a tensor of the loaded encoder still maps the weights file"
    # parameters and buffers: LayerNorms, positions and the Q4_0 embedding blocks, no int8 Linear weights
    assert sum(t.numel() * t.element_size() for t in kept) < 10 * 2**20


@pytest.mark.slow
def test_freed_activations_go_back_once_large_batches_stop(monkeypatch) -> None:
    import threading
    import time

    import moderation.classifier as mc
    from moderation import ModerationConfig

    clf = mc.get_classifier(ModerationConfig())
    assert clf is not None
    trimmed = threading.Event()
    trims: list[float] = []

    def trim() -> None:
        trims.append(time.monotonic())
        trimmed.set()

    monkeypatch.setattr(mc, "return_freed_memory", trim)
    monkeypatch.setattr(mc, "TRIM_IDLE_S", 0.3)
    one_window = "今天下午社区组织了植树活动，大家一起种了二十棵银杏树。" * 8
    for _ in range(3):  # single windows (the latency case) start no countdown
        clf.transformer_scores([one_window])
    assert not trimmed.wait(0.6) and trims == []
    batch = [f"{i}号通知：明天上午停水检修，请居民提前储水，工会将组织志愿者帮助老人。" * 2 for i in range(16)]
    first = clf.transformer_scores(batch)
    again = clf.transformer_scores(batch)  # restarts the countdown: one trim for the two calls
    last_call = time.monotonic()
    assert trimmed.wait(5.0)
    time.sleep(0.5)
    assert len(trims) == 1 and trims[0] >= last_call + 0.25  # only after the idle time
    np.testing.assert_array_equal(first, again)
