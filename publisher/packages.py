"""Ready-to-paste packages for assisted (manual) deliveries."""

from __future__ import annotations

from channels.base import PostContent, get_channel_class
from channels.manual import build_package
from publisher.db import session_scope
from publisher.delivery import account_info, make_channel
from publisher.errors import Conflict, NotFound
from publisher.models import Delivery, PostVersion


def package_for(delivery_id: int) -> bytes:
    """The ZIP an operator downloads to post a delivery by hand."""
    with session_scope() as s:
        d = s.get(Delivery, delivery_id)
        if d is None:
            raise NotFound(f"delivery {delivery_id} not found")
        if d.state != "awaiting_manual":
            raise Conflict(f"delivery {d.id} is {d.state}; packages are for awaiting_manual deliveries")
        v = s.get(PostVersion, d.version_id)
        info = account_info(d.account)
    content = PostContent(title=v.title, body=v.body, summary=v.summary, cover_url=v.cover_url)
    channel = make_channel(info)
    try:
        rendered = channel.render(content)
    finally:
        channel.close()
    platform = get_channel_class(info.kind).display_name or info.kind
    return build_package(content, rendered, delivery_id=delivery_id, platform=platform)
