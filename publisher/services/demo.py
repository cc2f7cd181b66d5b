"""Demo data: a provincial union with city unions, one user per role, and the sandboxes' demo accounts.

The accounts come from the running sandboxes themselves (``GET /_sandbox/demo-accounts``): production code
never imports the sandboxes, it asks them, as it would ask any platform.
"""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.clock import now
from core.errors import ConfigError
from publisher import services
from publisher.domain.models import Account

PROVINCE = "省总工会"
CITIES = ("市总工会", "区总工会")

# The title is rendered by each platform on its own, so the body does not repeat it as a heading.
DEMO_BODY = """为更好服务广大职工，省总工会"网上职工之家"今天正式上线。职工可在线办理会员服务、
参加技能培训、申请困难帮扶，并第一时间了解各级工会的工作动态。

欢迎各位职工朋友关注、转发！
"""


def fetch_demo_accounts(sandbox_url: str, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The demo accounts the sandboxes at ``sandbox_url`` offer: kind, name, credentials, config.

    Called before the seeding transaction begins, so no database lock is held over a network call.
    """
    try:
        response = httpx.get(f"{sandbox_url.rstrip('/')}/_sandbox/demo-accounts", timeout=timeout)
        response.raise_for_status()
        accounts = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise ConfigError(f"cannot read the demo accounts from the sandboxes at {sandbox_url}: {exc}") from exc
    if not isinstance(accounts, list):
        raise ConfigError(f"the sandboxes at {sandbox_url} answered no list of demo accounts")
    return accounts


def seed(session: Session, demo_accounts: list[dict[str, Any]], *, with_post: bool = False) -> list[Account]:
    """Create (idempotently) the demo organisations, users and the given sandbox accounts; optionally a demo
    post scheduled now."""
    province = services.ensure_organization(session, PROVINCE)
    for city in CITIES:
        services.ensure_organization(session, city, parent=province)
    for name, role in (("editor", "editor"), ("reviewer", "reviewer"), ("monitor", "monitor"), ("admin", "admin")):
        services.ensure_user(session, name, role, province)
    accounts: list[Account] = []
    for spec in demo_accounts:
        existing = session.scalar(select(Account).where(Account.kind == spec["kind"], Account.name == spec["name"]))
        if existing is None:
            existing = services.add_account(
                session,
                kind=spec["kind"],
                name=spec["name"],
                credentials=spec["credentials"],
                config=spec.get("config", {}),
                organization=province.id,
                actor="demo",
            )
        accounts.append(existing)
    if with_post and accounts:
        post = services.create_post(
            session,
            title="网上职工之家正式上线",
            body=DEMO_BODY,
            summary="省总工会网上职工之家今天正式上线。",
            accounts=[a.id for a in accounts],
            author="editor",
        )
        services.schedule_post(session, post.id, now(), actor="editor")
    return accounts
