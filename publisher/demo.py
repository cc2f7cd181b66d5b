"""Demo data: a provincial union with city unions, one user per role, and the sandboxes' demo accounts."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from publisher import services
from publisher.config import get_settings
from publisher.models import Account
from publisher.timeutil import now

PROVINCE = "省总工会"
CITIES = ("市总工会", "区总工会")

# The title is rendered by each platform on its own, so the body does not repeat it as a heading.
DEMO_BODY = """为更好服务广大职工，省总工会"网上职工之家"今天正式上线。职工可在线办理会员服务、
参加技能培训、申请困难帮扶，并第一时间了解各级工会的工作动态。

欢迎各位职工朋友关注、转发！
"""


def seed(session: Session, *, with_post: bool = False) -> list[Account]:
    """Create (idempotently) the demo organisations, users and sandbox accounts; optionally a demo post now."""
    from channels.sandbox import demo_accounts

    province = services.ensure_organization(session, PROVINCE)
    for city in CITIES:
        services.ensure_organization(session, city, parent=province)
    for name, role in (("editor", "editor"), ("reviewer", "reviewer"), ("monitor", "monitor"), ("admin", "admin")):
        services.ensure_user(session, name, role, province)
    accounts: list[Account] = []
    for spec in demo_accounts(get_settings().sandbox_url):
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
