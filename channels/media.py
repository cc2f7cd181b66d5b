"""Image bytes as the adapters need them: what kind of image a download is, and the bytes of a ``data:`` URI.

Pure functions, no IO. One place for what every adapter that uploads images needs before it talks to a
platform: platforms decide an upload's type from its bytes, not from the URL or the Content-Type an image
host claims, so :func:`sniff_image` looks at the magic bytes and :func:`image_type_for` is only the
fallback for bytes it does not recognise.

Why a table here rather than ``filetype``/``puremagic``: the platforms take five raster formats (JPEG,
PNG, GIF, WebP, BMP) whose signatures are fixed by their specifications and fit in five lines; a library
would add a dependency to recognise hundreds of formats that every adapter then refuses anyway.
The default cover is a static asset too (:func:`asset_bytes`): no image library or encoder is needed.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from urllib.parse import unquote_to_bytes, urlsplit


@dataclass(frozen=True)
class ImageType:
    """An image format: ``name`` (``"jpeg"``), MIME type (``"image/jpeg"``), file extension (``"jpg"``)."""

    name: str
    mime: str
    extension: str


JPEG = ImageType("jpeg", "image/jpeg", "jpg")
PNG = ImageType("png", "image/png", "png")
GIF = ImageType("gif", "image/gif", "gif")
WEBP = ImageType("webp", "image/webp", "webp")
BMP = ImageType("bmp", "image/bmp", "bmp")
IMAGE_TYPES: dict[str, ImageType] = {t.name: t for t in (JPEG, PNG, GIF, WEBP, BMP)}

_BY_MIME = {t.mime: t for t in IMAGE_TYPES.values()}
_BY_EXTENSION = {**{t.extension: t for t in IMAGE_TYPES.values()}, "jpeg": JPEG}


def sniff_image(data: bytes) -> ImageType | None:
    """The image format from the file's magic bytes, or ``None`` for anything else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    # SOI followed by the first marker's 0xFF: the two SOI bytes alone also start many non-images
    if data.startswith(b"\xff\xd8\xff"):
        return JPEG
    if data.startswith((b"GIF87a", b"GIF89a")):
        return GIF
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return WEBP
    if data.startswith(b"BM"):
        return BMP
    return None


def image_type_for(*, mime: str | None = None, url: str | None = None) -> ImageType | None:
    """The image format a Content-Type (``image/png; …``) names, else the one a URL's file extension names."""
    if mime:
        found = _BY_MIME.get(mime.split(";", 1)[0].strip().lower())
        if found is not None:
            return found
    if url:
        path = urlsplit(url).path
        if "." in path.rsplit("/", 1)[-1]:
            return _BY_EXTENSION.get(path.rsplit(".", 1)[-1].lower())
    return None


def decode_data_uri(uri: str) -> tuple[bytes, str]:
    """The bytes and media type of a ``data:`` URI (RFC 2397: ``data:[<type>][;base64],<data>``).

    The payload is percent-decoded first (a URI may escape any byte, base64's ``+`` and ``/`` included);
    whitespace inside base64 is ignored. The type defaults to ``text/plain`` as the RFC says. Raises
    :class:`ValueError` (``binascii.Error`` for bad base64) if ``uri`` is not a well-formed data URI.
    """
    if not uri[:5].lower() == "data:":
        raise ValueError("not a data: URI")
    header, comma, payload = uri[5:].partition(",")
    if not comma:
        raise ValueError("a data: URI needs a ',' before its data")
    params = [p.strip().lower() for p in header.split(";")]
    raw = unquote_to_bytes(payload)
    if "base64" in params[1:]:
        raw = base64.b64decode(b"".join(raw.split()), validate=True)
    return raw, params[0] or "text/plain"


@cache
def asset_bytes(name: str) -> bytes:
    """A file shipped in ``channels/assets/`` (read once per process)."""
    return files("channels").joinpath(f"assets/{name}").read_bytes()
