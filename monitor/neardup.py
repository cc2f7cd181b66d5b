"""Near duplicates: MinHash signatures on character 3-grams, and LSH band keys that find candidates in SQL.

Pure (no IO). Why MinHash on character n-grams and not SimHash: reposts of one short Chinese post differ by a
few characters (a prefix ``转发：``, a changed number, a tag), which moves many of a 64-bit SimHash's bits on an
80-character text, while the Jaccard similarity of the 3-gram sets stays high; ``bench/monitor_neardup.py``
measures both on the feed sandbox's reposts (figures in ``monitor/README.md``).

The LSH index is kept in the database (``monitor_lsh_bands``), not in a process's memory, so every worker sees
every item: an item's signature is cut into ``b`` bands of ``r`` values (``b`` and ``r`` chosen by ``datasketch``
for the threshold), each band hashed to a key; items sharing any key are candidates, and a candidate joins the
story when the signatures' estimated Jaccard similarity reaches the threshold.
"""

from __future__ import annotations

import hashlib
from functools import cache

import numpy as np
from datasketch import MinHash, MinHashLSH

from moderation.normalize import normalize

NUM_PERM = 128
NGRAM = 3
TEXT_CHARS = 1000  # characters of title + text that make the signature (reposts differ in their heads)


def shingles(text: str) -> set[bytes]:
    """Character 3-grams of the normalised text, spaces and punctuation dropped (the whole text if shorter)."""
    norm = "".join(ch for ch in normalize(text[:TEXT_CHARS]).text if ch.isalnum())
    if len(norm) <= NGRAM:
        return {norm.encode("utf-8")} if norm else set()
    return {norm[i : i + NGRAM].encode("utf-8") for i in range(len(norm) - NGRAM + 1)}


def signatures(texts: list[str]) -> list[np.ndarray]:
    """MinHash values (``uint64``, :data:`NUM_PERM` of them) for each text, built in one batch."""
    sets = [shingles(t) or {b""} for t in texts]
    return [np.asarray(m.hashvalues, dtype=np.uint64) for m in MinHash.bulk(sets, num_perm=NUM_PERM)]


def to_bytes(signature: np.ndarray) -> bytes:
    """A signature as stored (little-endian uint64)."""
    return signature.astype("<u8").tobytes()


def from_bytes(data: bytes) -> np.ndarray:
    """A stored signature back."""
    return np.frombuffer(data, dtype="<u8")


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Estimated Jaccard similarity of the two texts' 3-gram sets."""
    return float(np.mean(a == b)) if len(a) == len(b) else 0.0


@cache
def _ranges(threshold: float) -> tuple[tuple[int, int], ...]:
    # datasketch picks b and r minimising false positives and negatives around the threshold
    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    return tuple(lsh.hashranges)


def band_keys(signature: np.ndarray, threshold: float) -> list[str]:
    """The LSH band keys of a signature (``"<band>:<hash>"``, at most 40 characters)."""
    keys = []
    for band, (start, end) in enumerate(_ranges(threshold)):
        digest = hashlib.blake2b(signature[start:end].astype("<u8").tobytes(), digest_size=12).hexdigest()
        keys.append(f"{band}:{digest}")
    return keys
