"""Uploaded images (a post's cover): checked by their bytes, stored in the database, referred to as ``media:<id>``.

Why the database and not a folder: production runs workers on several machines, and every one of them must
read the cover it uploads to a platform; the database is the one store they all share (a cover is at most
10 MB, WeChat's limit, and the same bytes uploaded twice in an organisation are kept once).
"""

from __future__ import annotations

import base64
import hashlib

from sqlalchemy import select
from sqlalchemy.orm import Session

from channels.media import sniff_image
from core.errors import InvalidInput, NotFound
from publisher.domain.models import Media, User
from publisher.services.common import ancestors, audit, check_length, get
from publisher.services.people import PERMISSIONS, Principal, require

MEDIA_REF = "media:"
COVER_MAX_BYTES = 10_000_000  # WeChat's cover limit (10 MB), the largest any channel takes
FILENAME_MAX = 200


def media_ref(media: Media) -> str:
    """What a post version stores as its ``cover_url`` for an uploaded image."""
    return f"{MEDIA_REF}{media.id}"


def is_media_ref(url: str | None) -> bool:
    """Whether a cover is an uploaded image (``media:<id>``) rather than a URL."""
    return bool(url) and url.startswith(MEDIA_REF)


def _media_id(ref: str) -> int:
    tail = ref[len(MEDIA_REF) :]
    if not tail.isdigit() or len(tail) > 18:
        raise InvalidInput(f"cover {ref!r} is not an uploaded image (media:<id>)")
    return int(tail)


def upload_image(session: Session, actor: Principal, org_id: int | None, data: bytes, filename: str = "") -> Media:
    """Store an image uploaded by ``actor`` (an editor of ``org_id``; None: of the one organisation they write
    for): JPEG, PNG, GIF, WebP or BMP by its bytes, at most :data:`COVER_MAX_BYTES`. The same bytes uploaded
    again in the organisation give the same row."""
    if org_id is None:
        writes = sorted({org for role, org in actor.grants if role in PERMISSIONS["post.write"]})
        if len(writes) != 1:
            raise InvalidInput("name the organisation the image is for (organization)")
        org_id = writes[0]
    require(session, actor, "post.write", org_id)
    filename = (filename or "").strip().rsplit("/", 1)[-1].rsplit("\\", 1)[-1]
    check_length("file name", filename, FILENAME_MAX)
    if not data:
        raise InvalidInput("the uploaded file is empty")
    if len(data) > COVER_MAX_BYTES:
        raise InvalidInput(f"the image is {len(data)} bytes; at most {COVER_MAX_BYTES} (10 MB)")
    kind = sniff_image(data)
    if kind is None:
        raise InvalidInput(f"{filename or 'the upload'} is not a JPEG, PNG, GIF, WebP or BMP image")
    digest = hashlib.sha256(data).hexdigest()
    existing = session.scalar(select(Media).where(Media.organization_id == org_id, Media.sha256 == digest))
    if existing is not None:
        return existing
    user = session.get(User, actor.user_id) if actor.user_id is not None else None
    media = Media(
        organization_id=org_id,
        sha256=digest,
        content_type=kind.mime,
        size=len(data),
        filename=filename,
        data=data,
        uploaded_by=user.id if user else None,
    )
    session.add(media)
    session.flush()
    audit(session, actor, "media.upload", media, organization=org_id, size=len(data), type=kind.name)
    return media


def get_media(session: Session, actor: Principal, media_id: int) -> Media:
    """An uploaded image ``actor`` may see: one of their organisations' or one above it (a province's picture
    serves its cities, so their people see it; a neighbouring city's they do not)."""
    media = get(session, Media, media_id)
    if not actor.system and not any(media.organization_id in ancestors(session, org) for _, org in actor.grants):
        require(session, actor, "post.view", media.organization_id)  # raises, naming what would do
    return media


def check_media_cover(session: Session, actor: Principal, ref: str, post_org_id: int) -> None:
    """A post of ``post_org_id`` may use an uploaded image of that organisation or one above it (``actor``, its
    editor, is checked by the caller)."""
    try:
        media = get(session, Media, _media_id(ref))
    except NotFound:
        raise InvalidInput(f"cover {ref}: no such uploaded image") from None
    if media.organization_id not in ancestors(session, post_org_id):
        raise InvalidInput(f"cover {ref} was uploaded for another organisation; upload it for this post's")


def cover_source(session: Session, cover_url: str | None) -> str | None:
    """What an adapter is given for a cover: a URL as it is, an uploaded image as a ``data:`` URI of its bytes
    (the adapters read both, and need no access to our database)."""
    if not is_media_ref(cover_url):
        return cover_url
    assert cover_url is not None  # noqa: S101 - is_media_ref said so; for the type checker
    media = session.get(Media, _media_id(cover_url))
    if media is None:  # never deleted; a version refers only to a row that exists
        raise NotFound(f"cover {cover_url} is not in the database")
    return f"data:{media.content_type};base64,{base64.b64encode(media.data).decode('ascii')}"
