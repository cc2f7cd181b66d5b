"""The transformer training script's cached-activation steps (:mod:`moderation.train`), on a tiny random BERT.

The teacher of a shallow student is scored from a cache of the frozen lower layers' states; these tests check
that this gives exactly what the teacher model itself computes, and that a student is saved as the top layer
of its own depth.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from moderation.classifier import CONFIG_FILE, MODEL_CATEGORIES, WEIGHTS_FILE, encoder_fingerprint, mean_pool  # noqa: E402
from moderation.train import TopModel, build_cache, save_model, teacher_scores  # noqa: E402


def _encoder(layers: int = 4):
    torch.manual_seed(5)
    config = transformers.BertConfig(
        vocab_size=40,
        hidden_size=16,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    return transformers.BertModel(config, add_pooling_layer=False).eval()


_WINDOWS = [[1, 5, 7, 9, 2], [1, 3, 2], [1, 8, 8, 8, 8, 8, 8, 2], [1, 4, 2]]


def _teacher_dir(tmp_path, encoder):
    """A full-depth teacher whose top layer and head were 'fine-tuned' (perturbed here)."""
    import copy

    torch.manual_seed(9)
    top = copy.deepcopy(encoder.encoder.layer[-1])
    with torch.no_grad():
        for p in top.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model = TopModel([top], encoder.config, 16, len(MODEL_CATEGORIES))
    out = tmp_path / "teacher"
    save_model(out, model, "top1", 1, {"thresholds": {}}, tmp_path, encoder)
    return out, top, model.head


def test_teacher_scores_from_a_low_cache_equal_the_teachers_own_forward_pass(tmp_path) -> None:
    encoder = _encoder()
    teacher, top, head = _teacher_dir(tmp_path, encoder)
    cache = build_cache(encoder, _WINDOWS, 1, tmp_path / "L1", pad_id=0)
    version, scores = teacher_scores(teacher, encoder, cache, 1, tmp_path / "teacher-scores")
    assert version == json.loads((teacher / CONFIG_FILE).read_text())["version"]

    expected = []
    with torch.inference_mode():
        for ids in _WINDOWS:
            x = torch.tensor([ids])
            m = torch.ones_like(x)
            h = encoder.embeddings(input_ids=x)
            for layer in [*encoder.encoder.layer[:-1], top]:
                out = layer(h)
                h = out[0] if isinstance(out, tuple) else out
            expected.append(torch.sigmoid(head(mean_pool(h, m)))[0].numpy())
    # the cache keeps fp16 states: equal to that rounding
    np.testing.assert_allclose(scores, np.array(expected), atol=2e-3)
    again = teacher_scores(teacher, encoder, cache, 1, tmp_path / "teacher-scores")[1]
    assert np.array_equal(again, scores)  # reused from the file the first call wrote


def test_a_teacher_on_another_encoder_is_refused(tmp_path) -> None:
    encoder = _encoder()
    teacher, _, _ = _teacher_dir(tmp_path, encoder)
    other = _encoder(layers=4)
    with torch.no_grad():
        other.embeddings.LayerNorm.weight.add_(1.0)
    assert encoder_fingerprint(other) != encoder_fingerprint(encoder)
    cache = build_cache(other, _WINDOWS, 1, tmp_path / "L1", pad_id=0)
    with pytest.raises(SystemExit, match="another base encoder"):
        teacher_scores(teacher, other, cache, 1, tmp_path / "teacher-scores")


def test_a_student_is_saved_as_the_top_layer_of_its_depth(tmp_path) -> None:
    from safetensors.torch import load_file

    encoder = _encoder()
    student = TopModel([encoder.encoder.layer[1]], encoder.config, 16, len(MODEL_CATEGORIES))
    save_model(tmp_path / "cut2", student, "cut2", 1, {"thresholds": {}}, tmp_path, encoder, depth=2)
    meta = json.loads((tmp_path / "cut2" / CONFIG_FILE).read_text())
    assert meta["num_layers"] == 2 and meta["variant"] == "cut2"
    layers = {k.split(".")[3] for k in load_file(str(tmp_path / "cut2" / WEIGHTS_FILE)) if k.startswith("encoder.")}
    assert layers == {"1"}


@pytest.mark.slow
def test_int8_features_are_the_int8_runtimes_own_states(tmp_path) -> None:
    from moderation import ModerationConfig
    from moderation.classifier import make_windows, pad_batch
    from moderation.fast_encoder import load_runtime, runtime_dir
    from moderation.train import Int8Features

    tokenizer, runtime, _ = load_runtime(runtime_dir(ModerationConfig()))
    texts = ["今天下午社区组织了植树活动", "你这个死黑鬼，滚回非洲去，你们这种人就是垃圾", "加微信"]
    windows = make_windows(tokenizer, texts, max_tokens=160, first_only=True).ids
    pad = tokenizer.pad_token_id or 0
    layers = len(runtime.encoder.layer)
    config = transformers.BertConfig(hidden_size=runtime.config.hidden_size)
    config._attn_implementation = "sdpa"  # as the loaded encoder's (without one no mask is made)
    cache = build_cache(Int8Features(runtime, config), windows, layers, tmp_path / "L", pad)
    ids, mask = pad_batch(windows, pad)
    with torch.inference_mode():
        states = runtime(input_ids=ids, attention_mask=mask).last_hidden_state
    # one batch in both (int8 quantises activations per batch): the same states up to fp16
    for i, w in enumerate(windows):
        cached = cache.hidden[cache.off[i] : cache.off[i + 1]].astype(np.float32)
        np.testing.assert_allclose(cached, states[i, : len(w)].numpy(), atol=2e-3)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--variants", "top1,cutx"], "unknown variant 'cutx'; choose from frozen, top1, top2 or cutK"),
        (["--variants", "cut"], "unknown variant 'cut'"),
        (["--variants", "cut6", "--int8-features", "--base-model", "{hf}"], "--int8-features needs the bundled"),
    ],
)
def test_bad_arguments_stop_in_one_line_before_anything_loads(tmp_path, monkeypatch, argv, message) -> None:
    from moderation import train

    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setattr(train, "load_encoder", lambda *_a: pytest.fail("loaded the encoder first"))
    with pytest.raises(SystemExit) as stop:
        train.main([a.replace("{hf}", str(tmp_path)) for a in argv])
    assert message in str(stop.value) and "\n" not in str(stop.value)
