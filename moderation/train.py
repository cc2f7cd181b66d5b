"""Train the moderation classifier: ``python -m moderation.train [--data-root /work/shared] [--out DIR]``.

Recipe (all on CPU; see MODEL_CARD.md for the measurements behind it):

1. Tokenise every train/select example as an e5 query (first window, at most ``--max-len`` tokens).
2. Run the *frozen* encoder once over them up to layer ``L - 2`` and cache those token states in fp16 on
   disk (``--work-dir``). This is the only expensive step; it is reused by every variant below.
3. From the cache, derive the input of layer ``L - 1`` and the mean-pooled final states (one cheap pass).
4. Train the variants with the same data and seed: ``frozen`` (head only), ``top1`` (last layer + head),
   ``top2`` (last two layers + head), and the shallow students ``cutK`` (the first ``K - 1`` layers frozen,
   layer ``K`` trained + head; the layers above ``K`` are dropped at run time): multi-label BCE over
   :data:`MODEL_CATEGORIES`, a student's targets half the labels and half the scores of the teacher
   (``--teacher``, the shipped 12-layer model) — knowledge distillation onto a shallower encoder.
5. Pick the variant with the best model-selection score (COLD's held-out 10 % of *train*, SWSR select and
   the derived select slice; COLD dev is never used here), choose per-category thresholds there (max F1),
   check that int8 dynamic quantisation keeps the selection score, and write ``classifier.safetensors``
   (fp16 top layers + head) and ``classifier.json`` to ``--out``.

Reproducible: fixed seeds for data derivation, shuffling and initialisation; torch deterministic on CPU.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from torch import nn

from moderation import config as moderation_config
from moderation.classifier import (
    CONFIG_FILE,
    DEFAULT_MODEL_DIR,
    MODEL_CATEGORIES,
    WEIGHTS_FILE,
    Classifier,
    encoder_fingerprint,
    make_windows,
    mean_pool,
)
from moderation.config import ModerationConfig
from moderation.dataset import DEFAULT_DATA_ROOT, Example, all_examples, by_split, load_feedback
from moderation.encoder import base_model_dir, load_encoder

SEED = 13
#: a distilled student's targets: this share of the labels, the rest the teacher's scores
DISTIL_ALPHA = 0.5


def log(msg: str) -> None:
    """Progress lines with a timestamp (training runs for many minutes)."""
    print(f"[{datetime.now(UTC):%H:%M:%S}] {msg}", flush=True)


# ----------------------------------------------------------------------------------------------------
# Activation cache
# ----------------------------------------------------------------------------------------------------


@dataclass
class TokenCache:
    """Per-token hidden states of many texts, concatenated: text ``i`` is rows ``off[i]:off[i+1]``."""

    hidden: np.ndarray  # [total_tokens, H] fp16
    off: np.ndarray  # [n + 1] int64

    def batch(self, idx: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded ``[B, T, H]`` fp32 states and the ``[B, T]`` mask for the texts ``idx``."""
        lens = [int(self.off[i + 1] - self.off[i]) for i in idx]
        width = max(lens)
        h = np.zeros((len(idx), width, self.hidden.shape[1]), dtype=np.float32)
        mask = np.zeros((len(idx), width), dtype=np.int64)
        for row, (i, n) in enumerate(zip(idx, lens, strict=True)):
            h[row, :n] = self.hidden[self.off[i] : self.off[i] + n]
            mask[row, :n] = 1
        return torch.from_numpy(h), torch.from_numpy(mask)

    def lengths(self) -> np.ndarray:
        """Token count of each text."""
        return np.diff(self.off)


def _bidirectional_mask(config: object, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | None:
    from transformers.masking_utils import create_bidirectional_mask

    return create_bidirectional_mask(config=config, inputs_embeds=hidden, attention_mask=mask)


def run_layers(layers: Sequence[nn.Module], config: object, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Apply BERT layers to token states, with the same attention mask the full model would build."""
    attn = _bidirectional_mask(config, hidden, mask)
    for layer in layers:
        out = layer(hidden, attn)
        hidden = out[0] if isinstance(out, tuple) else out
    return hidden


class Int8Features(nn.Module):
    """The int8 runtime encoder (:mod:`moderation.fast_encoder`) behind the names :func:`build_cache` and
    :func:`derive_cache` use: ``embeddings(input_ids=...)``, ``encoder.layer`` and the HF ``config`` (for the
    attention mask, which the runtime's layers take as scaled-dot-product attention does)."""

    def __init__(self, runtime: nn.Module, hf_config: object) -> None:
        super().__init__()
        self.runtime = runtime
        self.encoder = runtime.encoder
        self.config = hf_config

    def embeddings(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Token embeddings (word + type + position, LayerNorm) of the runtime."""
        return self.runtime.embeddings(input_ids)


def build_cache(
    encoder: nn.Module, windows: list[list[int]], upto: int, path: Path, pad_id: int, batch_size: int = 64
) -> TokenCache:
    """Run embeddings + layers ``[0, upto)`` of the frozen encoder over ``windows``; store fp16 token states."""
    lens = np.array([len(w) for w in windows], dtype=np.int64)
    off = np.concatenate([[0], np.cumsum(lens)])
    hidden = np.lib.format.open_memmap(
        path.with_suffix(".tmp.npy"),
        mode="w+",
        dtype=np.float16,
        shape=(int(off[-1]), encoder.config.hidden_size),
    )
    order = np.argsort(lens, kind="stable")
    layers = encoder.encoder.layer[:upto]
    t0 = time.time()
    with torch.inference_mode():
        for b in range(0, len(order), batch_size):
            idx = order[b : b + batch_size]
            width = int(lens[idx].max())
            ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                ids[row, : lens[i]] = torch.tensor(windows[i])
                mask[row, : lens[i]] = 1
            h = encoder.embeddings(input_ids=ids)
            h = run_layers(layers, encoder.config, h, mask)
            for row, i in enumerate(idx):
                hidden[off[i] : off[i + 1]] = h[row, : lens[i]].numpy().astype(np.float16)
            if (b // batch_size) % 50 == 0:
                done = b + len(idx)
                log(f"cache {done}/{len(order)} texts, {done / (time.time() - t0):.1f} texts/s")
    hidden.flush()
    del hidden
    path.with_suffix(".tmp.npy").rename(path.with_suffix(".npy"))
    np.save(path.with_suffix(".off.npy"), off)
    return load_cache(path)


def load_cache(path: Path) -> TokenCache:
    """Open a cache written by :func:`build_cache` (memory-mapped)."""
    return TokenCache(np.load(path.with_suffix(".npy"), mmap_mode="r"), np.load(path.with_suffix(".off.npy")))


# ----------------------------------------------------------------------------------------------------
# Models trained on the cache
# ----------------------------------------------------------------------------------------------------


class TopModel(nn.Module):
    """The last ``len(layers)`` encoder layers (trainable) + mean pooling + a linear multi-label head."""

    def __init__(self, layers: Sequence[nn.Module], config: object, hidden_size: int, n_out: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.config = config
        self.dropout = nn.Dropout(0.1)
        self.head = nn.Linear(hidden_size, n_out)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, n_out]`` from the cached token states entering the first trainable layer."""
        if len(self.layers):
            hidden = run_layers(self.layers, self.config, hidden, mask)
        return self.head(self.dropout(mean_pool(hidden, mask)))


def length_batches(lengths: np.ndarray, idx: np.ndarray, batch_size: int, rng: np.random.Generator) -> list:
    """Shuffled batches of texts of similar length (less padding), in random order."""
    idx = rng.permutation(idx)
    chunks = [idx[i : i + batch_size * 50] for i in range(0, len(idx), batch_size * 50)]
    batches = []
    for chunk in chunks:
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def predict_cache(model: TopModel, cache: TokenCache, idx: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """Sigmoid scores of ``model`` for the cached texts ``idx``."""
    model.eval()
    out = np.zeros((len(idx), model.head.out_features), dtype=np.float32)
    order = np.argsort(cache.lengths()[idx], kind="stable")
    with torch.inference_mode():
        for b in range(0, len(order), batch_size):
            sel = order[b : b + batch_size]
            h, m = cache.batch(idx[sel])
            out[sel] = torch.sigmoid(model(h, m)).numpy()
    return out


def warmup_adamw(groups: list[dict], steps: int, warm: int) -> tuple[torch.optim.Optimizer, object]:
    """AdamW (weight decay 0.01) over the parameter ``groups`` and its schedule: a linear warm-up over ``warm``
    steps, then a linear decay to 0 at ``steps``."""
    opt = torch.optim.AdamW(groups, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(1, steps - warm)))
    )
    return opt, sched


def positive_weights(targets: np.ndarray) -> torch.Tensor:
    """Per category, BCE's positive weight: negatives / positives / 4, clipped to 1..8 — rare derived categories
    weigh more (capped), so the head does not ignore them."""
    pos = targets.sum(0)
    return torch.tensor(np.clip((len(targets) - pos) / np.maximum(pos, 1) / 4, 1.0, 8.0), dtype=torch.float32)


def train_variant(
    name: str,
    model: TopModel,
    cache: TokenCache,
    targets: np.ndarray,
    train_idx: np.ndarray,
    epochs: int,
    lr_layers: float,
    lr_head: float,
    batch_size: int,
    seed: int,
    pos_weight: torch.Tensor,
) -> TopModel:
    """Fine-tune ``model`` on the cached texts ``train_idx`` (AdamW, linear warm-up and decay)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    groups = [{"params": model.head.parameters(), "lr": lr_head}]
    if len(model.layers):
        groups.append({"params": model.layers.parameters(), "lr": lr_layers})
    steps = epochs * math.ceil(len(train_idx) / batch_size)
    opt, sched = warmup_adamw(groups, steps, max(1, steps // 20))
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    lengths = cache.lengths()
    step = 0
    t0 = time.time()
    for epoch in range(epochs):
        model.train()
        total = 0.0
        for batch in length_batches(lengths, train_idx, batch_size, rng):
            h, m = cache.batch(batch)
            loss = loss_fn(model(h, m), torch.from_numpy(targets[batch]))
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(batch)
            step += 1
            if step % 200 == 0:
                now_loss = float(loss.detach())
                log(f"{name} epoch {epoch + 1} step {step}/{steps} loss {now_loss:.4f} ({time.time() - t0:.0f}s)")
        log(f"{name} epoch {epoch + 1}/{epochs}: mean loss {total / len(train_idx):.4f}")
    return model


def teacher_scores(
    teacher_dir: Path, encoder: nn.Module, cache: TokenCache, depth: int, path: Path
) -> tuple[str, np.ndarray]:
    """The teacher's version and its fp32 sigmoid scores ``[n, categories]`` for every cached text.

    ``cache`` holds the frozen encoder's states entering layer ``depth``; the teacher's remaining frozen
    layers, its fine-tuned layers (``classifier.safetensors``) and its head are applied to them in batches,
    so no deeper cache is written. Saved as ``path``.npy (keyed by the teacher's version), reused after.
    """
    import copy

    from safetensors.torch import load_file

    meta = json.loads((teacher_dir / CONFIG_FILE).read_text(encoding="utf-8"))
    if meta["categories"] != list(MODEL_CATEGORIES):
        raise SystemExit(f"{teacher_dir}: the teacher's categories are not {MODEL_CATEGORIES}")
    if meta.get("base_fingerprint") and meta["base_fingerprint"] != encoder_fingerprint(encoder):
        raise SystemExit(f"{teacher_dir}: the teacher was trained on another base encoder")
    version = str(meta["version"])
    out_path = path.with_name(f"{path.name}-{version}.npy")
    if out_path.is_file():
        log(f"reusing teacher scores {out_path}")
        return version, np.load(out_path)
    weights = load_file(str(teacher_dir / WEIGHTS_FILE))
    total = int(meta.get("num_layers") or encoder.config.num_hidden_layers)
    if depth > total - int(meta["tuned_layers"]):
        raise SystemExit(f"{teacher_dir}: the teacher's tuned layers start below layer {depth}")
    layers = []
    for i in range(depth, total):
        layer = copy.deepcopy(encoder.encoder.layer[i])
        prefix = f"encoder.encoder.layer.{i}."
        tuned = {k[len(prefix) :]: v.float() for k, v in weights.items() if k.startswith(prefix)}
        if tuned:
            layer.load_state_dict(tuned)
        layers.append(layer)
    teacher = TopModel(layers, encoder.config, encoder.config.hidden_size, len(MODEL_CATEGORIES))
    teacher.head.load_state_dict({"weight": weights["head.weight"].float(), "bias": weights["head.bias"].float()})
    log(f"teacher {version}: layers {depth}..{total - 1} over {len(cache.off) - 1} cached texts")
    scores = predict_cache(teacher, cache, np.arange(len(cache.off) - 1))
    np.save(out_path, scores)
    return version, scores


# ----------------------------------------------------------------------------------------------------
# Selection metrics
# ----------------------------------------------------------------------------------------------------


def f1_binary(y: np.ndarray, p: np.ndarray) -> float:
    """F1 of the positive class."""
    tp = float(((y == 1) & (p == 1)).sum())
    fp = float(((y == 0) & (p == 1)).sum())
    fn = float(((y == 1) & (p == 0)).sum())
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def macro_f1_2class(y: np.ndarray, p: np.ndarray) -> float:
    """Mean of the F1 of class 1 and of class 0 (COLD's reported macro-F1)."""
    return (f1_binary(y, p) + f1_binary(1 - y, 1 - p)) / 2


def best_thresholds(y: np.ndarray, s: np.ndarray) -> dict[str, float]:
    """Per category, the threshold in 0.05..0.95 that maximises F1 on the given (selection) rows; of tied
    thresholds the middle one (a fully fine-tuned model separates the templated derived rows at every
    threshold, and the lowest tie, 0.05, would flag nearly any real text)."""
    out = {}
    grid = np.round(np.arange(0.05, 0.951, 0.05), 2)
    for j, cat in enumerate(MODEL_CATEGORIES):
        f1s = np.array([f1_binary(y[:, j], (s[:, j] >= t).astype(int)) if y[:, j].any() else 0.0 for t in grid])
        tied = np.flatnonzero(f1s >= f1s.max() - 1e-12)
        out[cat] = float(grid[tied[len(tied) // 2]]) if f1s.max() > 0 else 0.5
    return out


def selection_report(examples: Sequence[Example], scores: np.ndarray, thresholds: dict[str, float]) -> dict:
    """COLD-select macro-F1 (abuse), SWSR-select F1, derived-select per-category F1, and their summary."""
    y = np.array([e.target() for e in examples], dtype=np.int64)
    return selection_figures(y, [e.source for e in examples], scores, thresholds)


def selection_figures(y: np.ndarray, sources: Sequence[str], scores: np.ndarray, thresholds: dict[str, float]) -> dict:
    """:func:`selection_report` from the 0/1 targets ``[n, C]`` and the source of each row."""
    t = np.array([thresholds[c] for c in MODEL_CATEGORIES])
    pred = (scores >= t).astype(np.int64)
    ab = MODEL_CATEGORIES.index("abuse")
    src = np.array(list(sources))
    cold = src == "cold"
    swsr = src == "swsr"
    derived = np.char.startswith(src.astype(str), "derived")
    per_cat = {c: f1_binary(y[derived, j], pred[derived, j]) for j, c in enumerate(MODEL_CATEGORIES) if c != "abuse"}
    per_cat["abuse"] = f1_binary(y[:, ab], pred[:, ab])
    rep = {
        "cold_select_macro_f1": macro_f1_2class(y[cold, ab], pred[cold, ab]),
        "swsr_select_macro_f1": macro_f1_2class(y[swsr, ab], pred[swsr, ab]),
        "per_category_f1": per_cat,
    }
    rep["category_macro_f1"] = float(np.mean(list(per_cat.values())))
    rep["score"] = (rep["cold_select_macro_f1"] + rep["category_macro_f1"]) / 2
    return rep


# ----------------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------------


def _hash_texts(windows: list[list[int]], extra: str) -> str:
    h = hashlib.sha256(extra.encode())
    for w in windows:
        h.update(np.asarray(w, dtype=np.int32).tobytes())
        h.update(b"|")
    return h.hexdigest()[:16]


def save_model(
    out: Path,
    model: TopModel,
    variant: str,
    n_layers: int,
    meta: dict,
    base_dir: Path,
    encoder: nn.Module,
    depth: int | None = None,
) -> None:
    """Write fp16 top layers + head and ``classifier.json`` (atomically: temp dir, then swap).

    ``depth`` is the number of encoder layers the model runs (a shallow student's; default all of them):
    the trained layers are its top ones.
    """
    from safetensors.torch import save_file

    total = depth or encoder.config.num_hidden_layers
    tensors = {f"head.{k}": v.detach().half().contiguous() for k, v in model.head.state_dict().items()}
    for i, layer in enumerate(model.layers):
        li = total - len(model.layers) + i
        for k, v in layer.state_dict().items():
            tensors[f"encoder.encoder.layer.{li}.{k}"] = v.detach().half().contiguous()
    digest = hashlib.sha256(b"".join(t.float().numpy().tobytes() for t in tensors.values())).hexdigest()[:8]
    meta = {
        "version": f"e5s-{variant}-{datetime.now(UTC):%Y%m%d}-{digest}",
        "variant": variant,
        "categories": list(MODEL_CATEGORIES),
        "tuned_layers": n_layers,
        "base_model": base_dir.name,
        "base_fingerprint": encoder_fingerprint(encoder),
        **meta,
    }
    if depth is not None and depth < encoder.config.num_hidden_layers:
        meta["num_layers"] = depth
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / WEIGHTS_FILE), metadata={"version": meta["version"]})
    (out / CONFIG_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> None:
    """Command line entry point (``python -m moderation.train --help``)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    ap.add_argument("--out", type=Path, default=DEFAULT_MODEL_DIR)
    ap.add_argument("--work-dir", type=Path, default=Path("var/train-cache"))
    ap.add_argument("--max-len", type=int, default=160)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--variants", default="frozen,top1,top2")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--feedback",
        type=Path,
        action="append",
        default=[],
        help="reviewers' feedback JSONL (`matrix moderation feedback export`), added to the train split",
    )
    ap.add_argument(
        "--teacher",
        type=Path,
        default=None,
        help="the model a shallow student (cutK) is distilled from (default: the shipped one)",
    )
    ap.add_argument(
        "--int8-features",
        action="store_true",
        help="cache the frozen layers' states from the int8 runtime (train the top layer on what runs)",
    )
    ap.add_argument("--cache-only", action="store_true", help="stop after building the activation cache")
    ap.add_argument("--calibrate-only", action="store_true", help="only redo the fp32/int8 check of --out")
    moderation_config.add_arguments(ap)
    args = ap.parse_args(argv)
    config = moderation_config.from_arguments(args)
    # bad arguments stop here, before minutes of loading and tokenising
    variants = args.variants.split(",")
    fixed = ("frozen", "top1", "top2")
    for variant in variants:
        if variant not in fixed and not (variant[:3] == "cut" and variant[3:].isdigit()):
            raise SystemExit(f"unknown variant {variant!r}; choose from {', '.join(fixed)} or cutK")
    cuts = sorted({int(v[3:]) for v in variants if v.startswith("cut")})
    if args.int8_features and config.base_model is not None:
        raise SystemExit("--int8-features needs the bundled e5-small (its int8 runtime); drop --base-model")
    if args.calibrate_only:
        torch.set_num_threads(args.threads)
        calibrate(args.out, by_split(all_examples(args.data_root), "select"), config=config)
        return

    torch.set_num_threads(args.threads)
    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True, warn_only=True)

    base_dir = base_model_dir(config)
    tokenizer, encoder = load_encoder(base_dir)
    for p in encoder.parameters():
        p.requires_grad_(False)
    n_layers = encoder.config.num_hidden_layers

    examples = all_examples(args.data_root)
    train_ex = by_split(examples, "train")
    for path in args.feedback:
        fed, skipped = load_feedback(path)
        train_ex += fed
        log(f"{path}: {len(fed)} feedback examples added to train, {skipped} without labels skipped")
    select_ex = by_split(examples, "select")
    used = train_ex + select_ex
    log(f"{len(train_ex)} train, {len(select_ex)} select examples")
    windows = make_windows(tokenizer, [e.text for e in used], max_tokens=args.max_len, first_only=True).ids
    if any(not 2 <= k < n_layers for k in cuts):
        raise SystemExit(f"a shallow student cutK needs 2 <= K < {n_layers}")
    key = _hash_texts(windows, f"{encoder_fingerprint(encoder)}-{n_layers - 2}")
    args.work_dir.mkdir(parents=True, exist_ok=True)
    pad = tokenizer.pad_token_id or 0
    # What the frozen layers' states come from: the fp32 encoder, or (--int8-features) the int8 runtime that
    # the shipped default runs on, with its own (trimmed) token ids, so that the trained layer learns on the
    # states it will see (a student trained on fp32 states lost 0.013 of the pool score when run in int8).
    features: nn.Module = encoder
    ckey = key
    if args.int8_features:
        from moderation.fast_encoder import load_runtime, runtime_dir

        rt_tokenizer, runtime, rt_meta = load_runtime(runtime_dir(config))
        features = Int8Features(runtime, encoder.config)
        windows = make_windows(rt_tokenizer, [e.text for e in used], max_tokens=args.max_len, first_only=True).ids
        pad = rt_tokenizer.pad_token_id or 0
        ckey = _hash_texts(windows, f"{rt_meta['fingerprint']}-int8-{rt_meta.get('pieces_kept')}")
    # Token states entering layer d (0-based) of the frozen encoder, by d: the deepest needed first layer
    # input is built from the ids once, every later depth derived from the one below by one frozen layer.
    first = min([n_layers - 2, *(k - 1 for k in cuts)])
    caches: dict[int, TokenCache] = {}

    def cache_at(depth: int) -> TokenCache:
        if depth in caches:
            return caches[depth]
        path = args.work_dir / f"L{depth}-{ckey}"
        if path.with_suffix(".npy").is_file():
            log(f"reusing activation cache {path}")
            caches[depth] = load_cache(path)
        elif depth == first:
            log(f"building activation cache {path} ({len(windows)} texts, layers 0..{depth - 1})")
            caches[depth] = build_cache(features, windows, depth, path, pad)
        else:
            below = cache_at(depth - 1)
            caches[depth] = derive_cache(below, [features.encoder.layer[depth - 1]], encoder.config, path)
        return caches[depth]

    cache_at(first)
    if args.cache_only:
        return

    targets = np.array([e.target() for e in used], dtype=np.float32)
    teacher_version = None
    soft = targets
    if cuts:
        teacher_dir = args.teacher or DEFAULT_MODEL_DIR
        teacher_version, teacher = teacher_scores(
            teacher_dir, encoder, cache_at(min(cuts) - 1), min(cuts) - 1, args.work_dir / f"teacher-{key}"
        )
        soft = DISTIL_ALPHA * targets + (1 - DISTIL_ALPHA) * teacher
        log(f"distilling from {teacher_version} (targets {DISTIL_ALPHA:g} labels + {1 - DISTIL_ALPHA:g} teacher)")

    train_idx = np.arange(len(train_ex))
    sel_idx = np.arange(len(train_ex), len(used))
    pos = targets[train_idx].sum(0)
    pos_weight = positive_weights(targets[train_idx])
    log(f"positives per category: {dict(zip(MODEL_CATEGORIES, pos.astype(int).tolist(), strict=True))}")

    results: dict[str, dict] = {}
    models: dict[str, TopModel] = {}
    layers = encoder.encoder.layer
    # variant -> (cache, layers, how many train, epochs, layer lr, head lr, targets, depth at run time)
    plan: dict[str, tuple] = {}
    for variant in variants:
        if variant == "frozen":
            plan[variant] = (cache_at(n_layers), [], 0, 6, 0.0, 2e-3, targets, None)
        elif variant == "top1":
            plan[variant] = (cache_at(n_layers - 1), [layers[n_layers - 1]], 1, args.epochs, 4e-5, 1e-3, targets, None)
        elif variant == "top2":
            top = [layers[n_layers - 2], layers[n_layers - 1]]
            plan[variant] = (cache_at(n_layers - 2), top, 2, args.epochs, 4e-5, 1e-3, targets, None)
        else:
            k = int(variant[3:])
            plan[variant] = (cache_at(k - 1), [layers[k - 1]], 1, args.epochs, 4e-5, 1e-3, soft, k)
    import copy

    for variant in variants:
        cache, src_layers, n_tuned, epochs, lr_l, lr_h, fit_to, depth = plan[variant]
        torch.manual_seed(SEED)
        model = TopModel(copy.deepcopy(src_layers), encoder.config, encoder.config.hidden_size, len(MODEL_CATEGORIES))
        for i, layer in enumerate(model.layers):
            layer.requires_grad_(i >= len(model.layers) - n_tuned)
        # A finished variant is checkpointed, so an interrupted run resumes without retraining it.
        # a student's checkpoint is its teacher's too (its targets were half the teacher's scores)
        taught = f"-{teacher_version}" if depth else ""
        ckpt = args.work_dir / f"{variant}-e{epochs}-{ckey}{taught}.pt"
        t0 = time.time()
        if ckpt.is_file():
            saved = torch.load(ckpt, weights_only=True)
            model.load_state_dict(saved["state"])
            t0 -= saved["seconds"]
            log(f"{variant}: reusing checkpoint {ckpt}")
        else:
            model = train_variant(variant, model, cache, fit_to, train_idx, epochs, lr_l, lr_h, 32, SEED, pos_weight)
            torch.save({"state": model.state_dict(), "seconds": time.time() - t0}, ckpt)
        scores = predict_cache(model, cache, sel_idx)
        thresholds = best_thresholds(targets[sel_idx].astype(np.int64), scores)
        rep = selection_report(select_ex, scores, {c: 0.5 for c in MODEL_CATEGORIES})
        rep_t = selection_report(select_ex, scores, thresholds)
        results[variant] = {
            "epochs": epochs,
            "train_seconds": round(time.time() - t0, 1),
            "select_at_0.5": rep,
            "select_tuned": rep_t,
            "thresholds": thresholds,
            "tuned_layers": n_tuned,
            **({"num_layers": depth, "distilled_from": teacher_version} if depth else {}),
        }
        models[variant] = model
        log(f"{variant}: select@0.5 {json.dumps(rep, default=float)}")

    best = max(results, key=lambda v: results[v]["select_at_0.5"]["score"])
    log(f"best variant: {best}")
    chosen = models[best]
    tmp = args.out.with_name(args.out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    if args.out.is_dir():
        shutil.copytree(args.out, tmp)
    meta = {
        "trained": datetime.now(UTC).isoformat(timespec="seconds"),
        "max_len_train": args.max_len,
        "epochs": args.epochs,
        "seed": SEED,
        "int8_features": bool(args.int8_features),
        "thresholds": results[best]["thresholds"],
        "selection": results,
        "quantize": False,
    }
    save_model(
        tmp, chosen, best, results[best]["tuned_layers"], meta, base_dir, encoder, results[best].get("num_layers")
    )

    calibrate(tmp, select_ex, config=config)
    if args.out.is_dir():
        for f in (WEIGHTS_FILE, CONFIG_FILE):
            (args.out / f).unlink(missing_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    for f in (WEIGHTS_FILE, CONFIG_FILE):
        (tmp / f).replace(args.out / f)
    shutil.rmtree(tmp, ignore_errors=True)
    log(f"wrote {args.out}")


def calibrate(
    model_dir: Path, select_ex: Sequence[Example], tolerance: float = 0.01, *, config: ModerationConfig | None = None
) -> dict:
    """Score the selection slice through the real pipeline in fp32 and int8; pick thresholds for each.

    ``config`` names the base encoder the model was trained on (default: the process default).

    Thresholds are re-chosen for int8 because quantisation shifts scores a little, and thresholds near 0.9
    are sensitive to that. int8 becomes the default (``"quantize": true``) only if its selection score, with
    its own thresholds, is within ``tolerance`` of fp32's. Rewrites ``classifier.json``; weights untouched.
    """
    texts = [e.text for e in select_ex]
    y = np.array([e.target() for e in select_ex], dtype=np.int64)
    meta = json.loads((model_dir / CONFIG_FILE).read_text(encoding="utf-8"))
    for mode in ("fp32", "int8"):
        clf = Classifier.load(model_dir, quantize=mode == "int8", config=config)
        scores = np.array([[r[c] for c in MODEL_CATEGORIES] for r in clf.predict(texts)])
        thresholds = best_thresholds(y, scores)
        meta[f"thresholds_{mode}"] = thresholds
        meta[f"pipeline_select_{mode}"] = selection_report(select_ex, scores, thresholds)
        del clf
    s32, s8 = meta["pipeline_select_fp32"]["score"], meta["pipeline_select_int8"]["score"]
    meta["quantize"] = bool(s8 >= s32 - tolerance)
    meta["thresholds"] = meta["thresholds_int8" if meta["quantize"] else "thresholds_fp32"]
    log(f"pipeline select score fp32 {s32:.4f} int8 {s8:.4f} -> quantize={meta['quantize']}")
    (model_dir / CONFIG_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return meta


def derive_cache(src: TokenCache, layers: Sequence[nn.Module], config: object, path: Path) -> TokenCache:
    """Apply frozen ``layers`` to every cached text, writing a new cache (the next layer's input)."""
    hidden = np.lib.format.open_memmap(
        path.with_suffix(".tmp.npy"), mode="w+", dtype=np.float16, shape=src.hidden.shape
    )
    order = np.argsort(src.lengths(), kind="stable")
    with torch.inference_mode():
        for b in range(0, len(order), 128):
            idx = order[b : b + 128]
            h, m = src.batch(idx)
            out = run_layers(layers, config, h, m)
            for row, i in enumerate(idx):
                n = int(src.off[i + 1] - src.off[i])
                hidden[src.off[i] : src.off[i] + n] = out[row, :n].numpy().astype(np.float16)
    hidden.flush()
    del hidden
    path.with_suffix(".tmp.npy").rename(path.with_suffix(".npy"))
    np.save(path.with_suffix(".off.npy"), src.off)
    log(f"derived cache {path}")
    return load_cache(path)


if __name__ == "__main__":
    main()
