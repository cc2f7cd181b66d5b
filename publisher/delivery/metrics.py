"""Engagement metrics: snapshots of reads, likes, shares and comments, collected from each platform."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select

from channels.errors import ChannelError
from core.clock import now
from core.db import session_scope
from core.errors import ConfigError
from publisher.delivery.context import delivery_context
from publisher.domain.models import Delivery, MetricSnapshot, PostVersion
from publisher.services.channels import account_info, make_channel

log = logging.getLogger(__name__)


def collect_metrics(max_age_days: int = 30) -> int:
    """Snapshot engagement numbers of recently published deliveries, one adapter call batch per account."""
    since = now() - timedelta(days=max_age_days)
    with session_scope() as s:
        rows = s.scalars(select(Delivery).where(Delivery.state == "published", Delivery.published_at >= since)).all()
        by_account: dict[int, list[tuple[Delivery, PostVersion]]] = {}
        for d in rows:
            by_account.setdefault(d.account_id, []).append((d, s.get(PostVersion, d.version_id)))
        infos = {}
        for d in rows:
            if d.account_id in infos or d.account_id not in by_account:
                continue
            try:
                infos[d.account_id] = account_info(d.account)
            except ConfigError as exc:  # credentials this worker cannot decrypt: the other accounts still count
                log.warning("metrics for account %s: %s", d.account_id, exc)
                by_account.pop(d.account_id)
    taken = 0
    for account_id, items in by_account.items():
        channel = make_channel(infos[account_id])
        if not channel.supports_metrics:
            channel.close()
            continue
        try:
            numbers = channel.metrics([delivery_context(d, v, with_cover=False) for d, v in items])
        except ChannelError as exc:
            log.warning("metrics for account %s: %s", account_id, exc)
            continue
        finally:
            channel.close()
        with session_scope() as s:
            for delivery_id, m in numbers.items():
                s.add(
                    MetricSnapshot(
                        delivery_id=delivery_id, reads=m.reads, likes=m.likes, shares=m.shares, comments=m.comments
                    )
                )
                taken += 1
    return taken
