"""Fine-tuning every layer (:mod:`moderation.finetune`): bundle, training, install, on the real runtime.

A CPU run on a handful of texts and one or two layers (seconds): the point is that what ``train`` fits is what
the installed model runs, on both the transformers (fp32) and the int8 runtime path.
"""

from __future__ import annotations

import argparse
import json
import shutil

import numpy as np
import pytest
import torch

from moderation import ModerationConfig
from moderation.dataset import Example

pytestmark = pytest.mark.slow

_ABUSE = ["你就是个傻逼，滚远点", "脑残东西，闭嘴吧你", "这种垃圾人就该去死", "傻逼玩意儿又来带节奏"]
_CLEAN = ["今天工会组织职工体检", "请大家按时参加培训", "职工之家开放时间调整", "春节慰问活动圆满结束"]
_SPAM = ["加微信领彩金，百家乐日赚千元", "兼职日结，刷单返利，私聊"]


def _examples(split: str) -> list[Example]:
    out = [Example(t, {"abuse": 1}, "cold", split) for t in _ABUSE]
    out += [Example(t, {}, "cold", split) for t in _CLEAN]
    out += [Example(t, {"gambling": 1, "ads": 1}, "derived-gambling", split) for t in _SPAM]
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from moderation import finetune as ft
    from moderation.fast_encoder import runtime_dir

    root = tmp_path_factory.mktemp("ft")
    info = ft.export_bundle(
        _examples("train"),
        _examples("select"),
        root / "bundle",
        runtime_dir(ModerationConfig()),
        max_len=100,
        keywords=["傻逼"],
    )
    args = argparse.Namespace(
        device="cpu",
        threads=2,
        bundle=root / "bundle",
        out=root / "run",
        epochs=2,
        teacher_lrs=[1e-4],
        student_layers=[2],
        student_lr=1e-4,
        batch_size=4,
        budget_s=float("inf"),
        teacher_model=None,
    )
    report = ft.train_all(args)
    return root, info, report


def test_the_bundle_holds_train_copies_and_select_rows_only(trained) -> None:
    from moderation.finetune import BUNDLE_DATA, COPY, SELECT, TRAIN

    root, info, _ = trained
    with np.load(root / "bundle" / BUNDLE_DATA) as z:
        part, targets, off = z["part"], z["targets"], z["off"]
    assert (part == TRAIN).sum() == 10 and (part == SELECT).sum() == 10 and 0 < (part == COPY).sum() <= 10
    assert info["rows"] == {"train": 10, "copies": int((part == COPY).sum()), "select": 10}
    assert len(off) == len(part) + 1 and targets.shape == (len(part), 7)
    assert info["select_sources"] == [e.source for e in _examples("select")]


def test_the_student_is_distilled_from_the_teacher_and_saved_in_parts(trained) -> None:
    _, _, report = trained
    assert report["teacher"] == "teacher12-lr0.0001"
    student = report["variants"]["student2"]
    assert student["distilled_from"] == "teacher12-lr0.0001" and student["layers"] == 2
    assert student["files"] == ["student2.part0.safetensors"]
    assert set(student["thresholds"]) == {"politics", "porn", "violence", "gambling", "fraud", "ads", "abuse"}


def test_the_installed_student_scores_what_training_fitted(trained, tmp_path) -> None:
    from safetensors.torch import load_file

    from moderation import finetune as ft
    from moderation.classifier import CONFIG_FILE, DEFAULT_MODEL_DIR, Classifier
    from moderation.encoder import cached_e5_dir
    from moderation.scorecache import engine_views

    root, info, _ = trained
    model = tmp_path / "model"
    shutil.copytree(DEFAULT_MODEL_DIR, model)
    ft.install(root / "run", 2, model, _examples("select"), info)
    meta = json.loads((model / CONFIG_FILE).read_text(encoding="utf-8"))
    assert meta["num_layers"] == 2 and meta["tuned_layers"] == 2 and "combine" not in meta
    assert meta["version"].startswith("e5s-ft2-") and "thresholds_int8" in meta

    net = ft.FineTuned(root / "bundle", 2, 7)
    saved = load_file(str(root / "run" / "student2.part0.safetensors"))
    net.bert.load_state_dict({k: v.float() for k, v in saved.items() if not k.startswith("head.")}, strict=False)
    net.head.load_state_dict({"weight": saved["head.weight"].float(), "bias": saved["head.bias"].float()})
    with np.load(root / "bundle" / ft.BUNDLE_DATA) as z:
        rows = ft.Rows(z["ids"], z["off"], info["pad_id"], torch.device("cpu"))
        sel = np.flatnonzero(z["part"] == ft.SELECT)
    fitted = ft.predict(net, rows, sel)
    texts = engine_views([e.text for e in _examples("select")])
    fp32 = Classifier.load(model, quantize=False, linear=False, config=ModerationConfig(base_model=cached_e5_dir()))
    np.testing.assert_allclose(fp32.transformer_scores(texts), fitted, rtol=0, atol=1e-4)
    int8 = Classifier.load(model, quantize=True, linear=False, config=ModerationConfig())
    assert type(int8.encoder).__name__ == "E5Encoder" and len(int8.encoder.encoder.layer) == 2
    assert np.abs(int8.transformer_scores(texts) - fitted).max() < 0.15  # int8 activations, same weights
    base = ft.FineTuned(root / "bundle", 2, 7)
    assert not torch.equal(
        base.bert.encoder.layer[0].attention.self.query.weight, net.bert.encoder.layer[0].attention.self.query.weight
    )


def test_a_student_of_no_layers_is_refused_in_one_line(capsys) -> None:
    from moderation.finetune import main

    with pytest.raises(SystemExit, match="at least 1"):
        main(["train", "--student-layers", "0"])


def test_a_teacher_model_that_is_not_fully_fine_tuned_is_refused_in_one_line(tmp_path) -> None:
    from moderation.classifier import CONFIG_FILE, WEIGHTS_FILE
    from moderation.finetune import load_model

    with pytest.raises(SystemExit, match="not a model directory"):
        load_model(tmp_path / "nowhere", tmp_path)
    (tmp_path / CONFIG_FILE).write_text(json.dumps({"num_layers": 6, "tuned_layers": 1}), encoding="utf-8")
    (tmp_path / WEIGHTS_FILE).write_bytes(b"")
    with pytest.raises(SystemExit, match="not every layer of it was fine-tuned"):
        load_model(tmp_path, tmp_path)
