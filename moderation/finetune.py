"""Fine-tune every layer of the encoder, then distil it into a shallow one: ``python -m moderation.finetune``.

:mod:`moderation.train` trains the top layer of a frozen encoder from an activation cache, which a 2-core CPU
can do in minutes. Fine-tuning *every* layer is what the published baselines do (a fine-tuned BERT / RoBERTa),
and needs a GPU to be quick; this module does it in three steps so that the GPU machine needs nothing of the
project but torch, transformers, safetensors and numpy (its own image has them):

1. ``export`` (here, CPU, ~2 min): the train and select splits of :func:`moderation.dataset.all_examples`
   plus **disguised copies** of half the train texts (:func:`moderation.disguise.training_copies`, the five
   keyword styles and whole-text pinyin), each as the engine hands it to the classifier
   (:func:`moderation.scorecache.engine_views`), tokenised with the trimmed runtime tokenizer (first window,
   ``--max-len`` tokens) -> ``data.npz`` + ``bundle.json``, beside a copy of the runtime's int8 weights
   (``encoder.safetensors``, ``encoder.json``). No dev or test row is exported.
2. ``train`` (any device; a GPU where one is lent, a CPU only slower): a ``BertModel`` on the runtime's
   weights (its int8 Linears dequantised as the starting point; the word embeddings frozen, so the trimmed
   runtime's table stays the one used), every layer fine-tuned with a mean-pooled multi-label head (AdamW,
   warm-up and linear decay, dropout 0.1, bf16 autocast on a GPU). First the 12-layer **teacher**, one run per
   ``--teacher-lrs``, the best by its select score at 0.5 kept; then each **student** of ``--student-layers``
   (the base's first K layers) on 0.5 labels + 0.5 the teacher's scores. Writes ``report.json`` (every
   variant's select figures) and each student's fp16 weights (``student-K.partN.safetensors``, files of at
   most 16 MiB) as soon as it is trained.
3. ``install`` (here): a student into the model directory (``classifier.safetensors`` with its K layers and
   head, ``classifier.json`` with ``num_layers`` = K), then :func:`moderation.train.calibrate` picks the fp32
   and int8 thresholds on the select split through the real pipeline and whether int8 is the default.

Selection uses the select split only (COLD's seeded tenth of train, SWSR's select ids, the derived select
terms); dev is read once, by ``python -m moderation.evaluate``. A GPU run is not bit-reproducible (bf16,
non-deterministic kernels); the CPU run of the same command trains the same recipe.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shutil
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from torch import nn

from moderation.classifier import CONFIG_FILE, DEFAULT_MODEL_DIR, MODEL_CATEGORIES, WEIGHTS_FILE, mean_pool
from moderation.dataset import DEFAULT_DATA_ROOT, Example
from moderation.fast_encoder import META, WEIGHTS, Q4Embedding
from moderation.train import (
    DISTIL_ALPHA,
    SEED,
    best_thresholds,
    length_batches,
    log,
    positive_weights,
    selection_figures,
    warmup_adamw,
)

BUNDLE_DATA = "data.npz"
BUNDLE_META = "bundle.json"
REPORT = "report.json"
#: the most a returned file may hold (the GPU machine sends back files of at most 16 MiB)
PART_BYTES = 15 * 2**20
#: a row of the bundle is a train text, a disguised copy of one, or a select text
TRAIN, COPY, SELECT = 0, 1, 2


# ----------------------------------------------------------------------------------------------------
# 1. export
# ----------------------------------------------------------------------------------------------------


def export_bundle(
    train_ex: Sequence[Example],
    select_ex: Sequence[Example],
    out: Path,
    runtime: Path,
    max_len: int = 160,
    keywords: Sequence[str] = (),
    disguise: bool = True,
) -> dict:
    """Write the training bundle for ``train`` (see the module docstring, step 1); returns its metadata."""
    from moderation.classifier import make_windows
    from moderation.disguise import TRAIN_STYLES, training_copies
    from moderation.fast_encoder import load_runtime
    from moderation.scorecache import engine_views

    copies: list[tuple[int, str, str]] = []
    if disguise:
        picked = [i for i, e in enumerate(train_ex) if _bucket(e.text, 2) == 0]
        styles = (*TRAIN_STYLES, "whole_text_pinyin")
        copies = [
            (picked[k], style, text)
            for k, style, text in training_copies([train_ex[i].text for i in picked], keywords, styles)
        ]
    rows = [*train_ex, *(train_ex[i] for i, _, _ in copies), *select_ex]
    part = np.array([TRAIN] * len(train_ex) + [COPY] * len(copies) + [SELECT] * len(select_ex), dtype=np.int8)
    raw = [*(e.text for e in train_ex), *(text for _, _, text in copies), *(e.text for e in select_ex)]
    log(f"{len(train_ex)} train, {len(copies)} disguised copies, {len(select_ex)} select texts: engine views")
    texts = engine_views(raw)
    tokenizer, _, meta = load_runtime(runtime, layers=1)
    windows = make_windows(tokenizer, texts, max_tokens=max_len, first_only=True).ids
    lens = np.array([len(w) for w in windows], dtype=np.int64)
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out / BUNDLE_DATA,
        ids=np.concatenate([np.asarray(w, dtype=np.int32) for w in windows]),
        off=np.concatenate([[0], np.cumsum(lens)]),
        targets=np.array([e.target() for e in rows], dtype=np.float32),
        part=part,
    )
    for name in (WEIGHTS, META):
        shutil.copyfile(runtime / name, out / name)
    digest = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:12]
    info = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "categories": list(MODEL_CATEGORIES),
        "max_len": max_len,
        "pad_id": int(tokenizer.pad_token_id or 0),
        "rows": {"train": len(train_ex), "copies": len(copies), "select": len(select_ex)},
        "copy_styles": dict(sorted(Counter(style for _, style, _ in copies).items())),
        "select_sources": [e.source for e in select_ex],
        "texts_sha256": digest,
        "runtime": runtime.name,
        "base_fingerprint": meta["fingerprint"],
    }
    (out / BUNDLE_META).write_text(json.dumps(info, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    log(f"wrote {out} ({int(lens.sum())} tokens)")
    return info


def _bucket(key: str, modulo: int) -> int:
    return int(hashlib.sha1(f"ft-copy{key}".encode(), usedforsecurity=False).hexdigest()[:8], 16) % modulo


# ----------------------------------------------------------------------------------------------------
# 2. train
# ----------------------------------------------------------------------------------------------------


def base_state(bundle: Path, layers: int) -> tuple[dict[str, torch.Tensor], dict]:
    """The runtime's weights as a ``BertModel`` state dict (fp32) for its first ``layers`` layers, and its
    config: int8 Linears dequantised (``(q - zero) * scale`` per output channel), the Q4 word table as e5.c
    decodes it (exactly the rows the runtime looks up)."""
    from safetensors import safe_open

    meta = json.loads((bundle / META).read_text(encoding="utf-8"))
    state: dict[str, torch.Tensor] = {}
    with safe_open(str(bundle / WEIGHTS), framework="pt") as fh:
        names = list(fh.keys())
        for name in names:
            if name.startswith(("word.", "vocab.")) or name.endswith((".scales", ".zero_points")):
                continue
            if name.startswith("encoder.layer.") and int(name.split(".")[2]) >= layers:
                continue
            if name.endswith(".qweight"):
                module = name[: -len(".qweight")]
                q = fh.get_tensor(name).double()
                scale = fh.get_tensor(f"{module}.scales").double()
                zero = fh.get_tensor(f"{module}.zero_points").double()
                state[f"{module}.weight"] = ((q - zero[:, None]) * scale[:, None]).float()
            else:
                state[name] = fh.get_tensor(name).float()
        qs, d = fh.get_tensor("word.qs"), fh.get_tensor("word.d")
        state["embeddings.word_embeddings.weight"] = Q4Embedding(qs, d)(torch.arange(qs.shape[0]))
    return state, meta["config"]


class FineTuned(nn.Module):
    """``BertModel`` (no pooler) + mean pooling + dropout + a linear multi-label head."""

    def __init__(self, bundle: Path, layers: int, n_out: int) -> None:
        super().__init__()
        from transformers import BertConfig, BertModel

        state, cfg = base_state(bundle, layers)
        config = BertConfig(
            vocab_size=cfg["vocab_size"],
            hidden_size=cfg["hidden_size"],
            num_hidden_layers=layers,
            num_attention_heads=cfg["num_attention_heads"],
            intermediate_size=cfg["intermediate_size"],
            max_position_embeddings=cfg["max_position_embeddings"],
            type_vocab_size=cfg["type_vocab_size"],
            layer_norm_eps=cfg["layer_norm_eps"],
            hidden_act="gelu",
        )
        self.bert = BertModel(config, add_pooling_layer=False)
        missing, unexpected = self.bert.load_state_dict(state, strict=False)
        if unexpected or [m for m in missing if not m.endswith("position_ids")]:
            raise SystemExit(f"{bundle}: the runtime's weights do not fit BertModel ({missing[:3]} {unexpected[:3]})")
        # frozen: the shipped runtime keeps its own (Q4) table, so a fine-tuned one would not be the one used
        self.bert.embeddings.word_embeddings.weight.requires_grad_(False)
        self.dropout = nn.Dropout(0.1)
        self.head = nn.Linear(cfg["hidden_size"], n_out)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, n_out]``."""
        hidden = self.bert(input_ids=ids, attention_mask=mask).last_hidden_state
        return self.head(self.dropout(mean_pool(hidden.float(), mask)))


class Rows:
    """The bundle's token ids: right-padded batches on a device."""

    def __init__(self, ids: np.ndarray, off: np.ndarray, pad: int, device: torch.device) -> None:
        self.ids, self.off, self.pad, self.device = ids, off, pad, device

    def lengths(self) -> np.ndarray:
        """Token count of each row."""
        return np.diff(self.off)

    def batch(self, idx: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, T]`` ids and mask of the rows ``idx``."""
        lens = [int(self.off[i + 1] - self.off[i]) for i in idx]
        ids = np.full((len(idx), max(lens)), self.pad, dtype=np.int64)
        mask = np.zeros_like(ids)
        for r, (i, n) in enumerate(zip(idx, lens, strict=True)):
            ids[r, :n] = self.ids[self.off[i] : self.off[i] + n]
            mask[r, :n] = 1
        return torch.from_numpy(ids).to(self.device), torch.from_numpy(mask).to(self.device)


def _autocast(device: torch.device):
    return (
        torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    )


def fit(
    net: FineTuned,
    rows: Rows,
    targets: np.ndarray,
    idx: np.ndarray,
    *,
    epochs: int,
    lr: float,
    pos_weight: torch.Tensor,
    batch_size: int = 32,
    name: str = "",
) -> FineTuned:
    """Fine-tune ``net`` on the rows ``idx`` towards ``targets`` (AdamW; head at 1e-3, the encoder at ``lr``)."""
    torch.manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    encoder = [p for p in net.bert.parameters() if p.requires_grad]
    steps = epochs * math.ceil(len(idx) / batch_size)
    groups = [{"params": encoder, "lr": lr}, {"params": net.head.parameters(), "lr": 1e-3}]
    opt, sched = warmup_adamw(groups, steps, max(1, steps // 16))
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight.to(rows.device))
    t0 = time.time()
    for epoch in range(epochs):
        net.train()
        total = 0.0
        for batch in length_batches(rows.lengths(), idx, batch_size, rng):
            ids, mask = rows.batch(batch)
            with _autocast(rows.device):
                logits = net(ids, mask)
            loss = loss_fn(logits.float(), torch.from_numpy(targets[batch]).to(rows.device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(batch)
        log(f"{name} epoch {epoch + 1}/{epochs}: mean loss {total / len(idx):.4f} ({time.time() - t0:.0f} s)")
    return net


def predict(net: FineTuned, rows: Rows, idx: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Sigmoid scores ``[len(idx), C]``."""
    net.eval()
    out = np.zeros((len(idx), net.head.out_features), dtype=np.float32)
    order = np.argsort(rows.lengths()[idx], kind="stable")
    with torch.inference_mode(), _autocast(rows.device):
        for b in range(0, len(order), batch_size):
            sel = order[b : b + batch_size]
            ids, mask = rows.batch(idx[sel])
            out[sel] = torch.sigmoid(net(ids, mask).float()).cpu().numpy()
    return out


def load_model(model_dir: Path, bundle: Path) -> FineTuned:
    """A model directory written by :func:`install` (``classifier.safetensors`` with every layer it runs) as a
    :class:`FineTuned` on ``bundle``'s runtime: a teacher for a shallower student."""
    from safetensors.torch import load_file

    if not (model_dir / CONFIG_FILE).is_file() or not (model_dir / WEIGHTS_FILE).is_file():
        raise SystemExit(f"{model_dir}: not a model directory (it needs {CONFIG_FILE} and {WEIGHTS_FILE})")
    meta = json.loads((model_dir / CONFIG_FILE).read_text(encoding="utf-8"))
    layers = int(meta.get("num_layers") or 12)
    if int(meta.get("tuned_layers", 0)) != layers:
        raise SystemExit(f"{model_dir}: not every layer of it was fine-tuned; teach from a moderation.finetune model")
    weights = load_file(str(model_dir / WEIGHTS_FILE))
    net = FineTuned(bundle, layers, len(MODEL_CATEGORIES))
    layer_state = {k[len("encoder.") :]: v.float() for k, v in weights.items() if k.startswith("encoder.")}
    _missing, unexpected = net.bert.load_state_dict(layer_state, strict=False)
    if unexpected:
        raise SystemExit(f"{model_dir}: weights that the encoder does not have: {unexpected[:3]}")
    net.head.load_state_dict({"weight": weights["head.weight"].float(), "bias": weights["head.bias"].float()})
    return net


def save_student(net: FineTuned, out: Path, name: str) -> list[str]:
    """The student's fp16 weights (``BertModel`` layer names + ``head.*``) in files of at most
    :data:`PART_BYTES`; returns their names."""
    from safetensors.torch import save_file

    tensors = {
        k: v.detach().half().cpu().contiguous() for k, v in net.bert.state_dict().items() if k.startswith("encoder.")
    }
    tensors.update({f"head.{k}": v.detach().half().cpu().contiguous() for k, v in net.head.state_dict().items()})
    parts: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for k, v in tensors.items():
        n = v.numel() * v.element_size()
        if size + n > PART_BYTES and parts[-1]:
            parts.append({})
            size = 0
        parts[-1][k] = v
        size += n
    names = []
    for i, part in enumerate(parts):
        names.append(f"{name}.part{i}.safetensors")
        save_file(part, str(out / names[-1]))
    return names


def train_all(args: argparse.Namespace) -> dict:
    """Step 2 (see the module docstring): teacher runs, then the distilled students; returns the report."""
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(SEED)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    info = json.loads((args.bundle / BUNDLE_META).read_text(encoding="utf-8"))
    if info["categories"] != list(MODEL_CATEGORIES):
        raise SystemExit(f"{args.bundle}: its categories are not {MODEL_CATEGORIES}")
    with np.load(args.bundle / BUNDLE_DATA) as z:
        ids, off, targets, part = z["ids"], z["off"], z["targets"], z["part"]
    rows = Rows(ids, off, int(info["pad_id"]), device)
    fit_idx = np.flatnonzero(part != SELECT)
    sel_idx = np.flatnonzero(part == SELECT)
    y_sel = targets[sel_idx].astype(np.int64)
    sources = info["select_sources"]
    pos_weight = positive_weights(targets[fit_idx])
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    report: dict = {
        "bundle": info["texts_sha256"],
        "batch_size": args.batch_size,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "rows": info["rows"],
        "variants": {},
    }

    select_scores: dict[str, np.ndarray] = {}
    # a run is not started when it would end past --budget-s, judged by the last run's seconds per layer
    per_layer = [0.0]

    def fits(layers: int, name: str) -> bool:
        if time.time() - started + per_layer[0] * layers <= args.budget_s:
            return True
        log(f"{name}: skipped, it would end past the time budget of {args.budget_s:g} s")
        return False

    def record(name: str, net: FineTuned, seconds: float, **extra: object) -> float:
        per_layer[0] = seconds / int(extra["layers"])  # type: ignore[call-overload]
        scores = predict(net, rows, sel_idx)
        at_half = selection_figures(y_sel, sources, scores, {c: 0.5 for c in MODEL_CATEGORIES})
        thresholds = best_thresholds(y_sel, scores)
        report["variants"][name] = {
            "seconds": round(seconds, 1),
            "select_at_0.5": at_half,
            "select_tuned": selection_figures(y_sel, sources, scores, thresholds),
            "thresholds": thresholds,
            **extra,
        }
        select_scores[name] = scores
        np.savez_compressed(args.out / "select-scores.npz", **select_scores)
        (args.out / REPORT).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        log(f"{name}: select score at 0.5 {at_half['score']:.4f} {json.dumps(at_half['per_category_f1'])}")
        return float(at_half["score"])

    def run(layers: int, fit_to: np.ndarray, lr: float, name: str) -> tuple[FineTuned, float]:
        t0 = time.time()
        net = FineTuned(args.bundle, layers, len(MODEL_CATEGORIES)).to(device)
        net = fit(
            net,
            rows,
            fit_to,
            fit_idx,
            epochs=args.epochs,
            lr=lr,
            pos_weight=pos_weight,
            batch_size=args.batch_size,
            name=name,
        )
        return net, time.time() - t0

    full = int(json.loads((args.bundle / META).read_text(encoding="utf-8"))["config"]["num_hidden_layers"])
    best: tuple[float, str, FineTuned | None] = (-1.0, "", None)
    for lr in args.teacher_lrs:
        name = f"teacher{full}-lr{lr:g}"
        if best[2] is not None and not fits(full, name):
            continue
        net, seconds = run(full, targets, lr, name)
        score = record(name, net, seconds, layers=full, lr=lr, epochs=args.epochs)
        if score > best[0]:
            best = (score, name, net)
    _, teacher_name, teacher = best
    if args.teacher_model is not None:  # a model directory (an installed student) instead of a new teacher
        teacher, teacher_name = load_model(args.teacher_model, args.bundle), str(args.teacher_model)
        teacher = teacher.to(device)
    soft = targets
    if teacher is not None:
        all_idx = np.arange(len(part))
        soft = DISTIL_ALPHA * targets + (1 - DISTIL_ALPHA) * predict(teacher, rows, all_idx)
        report["teacher"] = teacher_name
        del teacher
    for k in args.student_layers:
        name = f"student{k}"
        if not fits(k, name):
            continue
        net, seconds = run(k, soft, args.student_lr, name)
        files = save_student(net, args.out, name)
        record(
            name,
            net,
            seconds,
            layers=k,
            lr=args.student_lr,
            epochs=args.epochs,
            distilled_from=report.get("teacher"),
            files=files,
        )
        del net
    report["seconds"] = round(time.time() - started, 1)
    (args.out / REPORT).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return report


# ----------------------------------------------------------------------------------------------------
# 3. install
# ----------------------------------------------------------------------------------------------------


def install(run: Path, layers: int, out: Path, select_ex: Sequence[Example], bundle_meta: dict | None = None) -> Path:
    """Write the trained student ``student{layers}`` of ``run`` as the model in ``out``, then calibrate it on
    ``select_ex`` (the select split)."""
    from safetensors.torch import load_file, save_file

    from moderation.train import calibrate

    report = json.loads((run / REPORT).read_text(encoding="utf-8"))
    name = f"student{layers}"
    if name not in report["variants"]:
        raise SystemExit(f"{run}: no {name} was trained (have: {', '.join(report['variants'])})")
    entry = report["variants"][name]
    tensors: dict[str, torch.Tensor] = {}
    for f in entry["files"]:
        for k, v in load_file(str(run / f)).items():
            tensors[k if k.startswith("head.") else f"encoder.{k}"] = v
    digest = hashlib.sha256(b"".join(t.float().numpy().tobytes() for t in tensors.values())).hexdigest()[:8]
    base = json.loads((DEFAULT_MODEL_DIR / CONFIG_FILE).read_text(encoding="utf-8"))
    meta = {
        "version": f"e5s-ft{layers}-{datetime.now(UTC):%Y%m%d}-{digest}",
        "variant": f"ft{layers}",
        "categories": list(MODEL_CATEGORIES),
        "tuned_layers": layers,
        "base_model": base["base_model"],
        "base_fingerprint": (bundle_meta or {}).get("base_fingerprint", base["base_fingerprint"]),
        "trained": datetime.now(UTC).isoformat(timespec="seconds"),
        "max_len_train": (bundle_meta or {}).get("max_len", 160),
        "epochs": entry["epochs"],
        "seed": SEED,
        "recipe": "moderation.finetune: every layer fine-tuned, distilled from the fine-tuned 12-layer teacher",
        "trained_on": report["device"],
        "bundle": report["bundle"],
        "rows": report["rows"],
        "thresholds": entry["thresholds"],
        "selection": report["variants"],
        "teacher": report.get("teacher"),
        "quantize": False,
    }
    if layers < 12:
        meta["num_layers"] = layers
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    if out.is_dir():
        shutil.copytree(out, tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"version": meta["version"]})
    (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    calibrate(tmp, select_ex)
    out.mkdir(parents=True, exist_ok=True)
    for f in (WEIGHTS_FILE, CONFIG_FILE):
        (tmp / f).replace(out / f)
    shutil.rmtree(tmp, ignore_errors=True)
    log(f"wrote {out} ({meta['version']})")
    return out


# ----------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv: Sequence[str] | None = None) -> None:
    """Command line entry point (``python -m moderation.finetune {export,train,install} --help``)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="step", required=True)
    ex = sub.add_parser("export", help="write the training bundle (here, CPU)")
    ex.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    ex.add_argument("--out", type=Path, default=Path("var/finetune/bundle"))
    ex.add_argument("--max-len", type=int, default=160)
    ex.add_argument("--no-disguise", action="store_true", help="no disguised copies")
    tr = sub.add_parser("train", help="fine-tune the teacher and the students (a GPU where there is one)")
    tr.add_argument("--bundle", type=Path, default=Path("var/finetune/bundle"))
    tr.add_argument("--out", type=Path, default=Path("var/finetune/run"))
    tr.add_argument("--device", default="auto", help="auto (cuda if present), cuda or cpu")
    tr.add_argument("--epochs", type=int, default=3)
    tr.add_argument("--teacher-lrs", type=_floats, default=[5e-5, 1e-4], help="comma-separated; empty: no teacher")
    tr.add_argument("--student-layers", type=_ints, default=[6, 5])
    tr.add_argument("--student-lr", type=float, default=1e-4)
    tr.add_argument(
        "--teacher-model", type=Path, default=None, help="distil from this model directory (with --teacher-lrs '')"
    )
    tr.add_argument("--threads", type=int, default=2)
    tr.add_argument("--batch-size", type=int, default=32)
    tr.add_argument(
        "--budget-s", type=float, default=float("inf"), help="start no run that would end after this many seconds"
    )
    ins = sub.add_parser("install", help="make a trained student the model (here), then calibrate it")
    ins.add_argument("--run", type=Path, default=Path("var/finetune/run"))
    ins.add_argument("--layers", type=int, default=6)
    ins.add_argument("--bundle", type=Path, default=Path("var/finetune/bundle"))
    ins.add_argument("--out", type=Path, default=DEFAULT_MODEL_DIR)
    ins.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    args = ap.parse_args(argv)
    if args.step == "export":
        from moderation.category_data import disguise_keywords
        from moderation.dataset import all_examples, by_split
        from moderation.disguise import load_keywords
        from moderation.fast_encoder import runtime_dir

        examples = all_examples(args.data_root)
        keywords = sorted(set(load_keywords(args.data_root)) | set(disguise_keywords()))
        export_bundle(
            by_split(examples, "train"),
            by_split(examples, "select"),
            args.out,
            runtime_dir(),
            args.max_len,
            keywords,
            disguise=not args.no_disguise,
        )
    elif args.step == "train":
        if any(not 1 <= k for k in args.student_layers):
            raise SystemExit("--student-layers: each K must be at least 1")
        train_all(args)
    else:
        meta_path = args.bundle / BUNDLE_META
        bundle_meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else None
        from moderation.dataset import all_examples, by_split

        install(args.run, args.layers, args.out, by_split(all_examples(args.data_root), "select"), bundle_meta)


if __name__ == "__main__":
    main()
