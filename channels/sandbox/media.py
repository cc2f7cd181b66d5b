"""Images as the sandboxes see them: a sample image, type sniffing by magic bytes, ``<img>`` in a body.

Platforms decide an upload's type from its bytes, never from the file name or the Content-Type the
client claims, so every sandbox that takes uploads sniffs with :func:`image_type` and then applies its
own list of accepted types. :data:`SAMPLE_PNG` is a small image the sandboxes serve as "an image hosted
elsewhere" and as a default cover; it is a static file (``assets/sample.png``) so that no sandbox needs
an image library or an encoder of its own.
"""

from __future__ import annotations

from html.parser import HTMLParser
from importlib.resources import files

SAMPLE_PNG: bytes = files(__package__).joinpath("assets/sample.png").read_bytes()

PNG, JPEG, GIF, WEBP, BMP = "image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp"

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def image_type(data: bytes) -> str | None:
    """The MIME type of an image by its magic bytes (PNG, JPEG, GIF, WebP, BMP), or ``None``."""
    if data.startswith(_PNG_SIGNATURE):
        return PNG
    # SOI followed by the first marker's 0xFF: two bytes alone also start many non-images
    if data.startswith(b"\xff\xd8\xff"):
        return JPEG
    if data.startswith((b"GIF87a", b"GIF89a")):
        return GIF
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return WEBP
    if data.startswith(b"BM"):
        return BMP
    return None


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk, or ``(0, 0)`` for anything else."""
    # IHDR is always the first chunk: 8 bytes signature, 4 length, 4 type, then width and height
    if not data.startswith(_PNG_SIGNATURE) or len(data) < 24 or data[12:16] != b"IHDR":
        return 0, 0
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


class _ImageSources(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            src = dict(attrs).get("src")
            if src:
                self.sources.append(src)


def image_sources(body: str) -> list[str]:
    """``src`` of every ``<img>`` in an HTML body (entities decoded), in order, each once."""
    parser = _ImageSources()
    parser.feed(body)
    parser.close()
    return list(dict.fromkeys(parser.sources))
