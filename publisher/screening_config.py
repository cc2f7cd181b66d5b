"""What the moderation engine needs to know about a post's organisation and channels."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from publisher.models import Post


def options_for(session: Session, post: Post) -> dict[str, Any]:
    """Keyword arguments for ``moderation.screen`` for this post (organisation lists, policy overrides)."""
    return {}
