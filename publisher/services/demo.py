"""Demo data: a provincial union with city unions, one user per role, and the sandboxes' demo accounts.

The accounts come from the running sandboxes themselves (``GET /_sandbox/demo-accounts``): production code
never imports the sandboxes, it asks them, as it would ask any platform.
"""

from __future__ import annotations

import secrets
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.clock import now
from core.errors import ConfigError
from publisher import services
from publisher.domain.models import Account, Organization, User

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


# One user per role on the province, and an editor and a reviewer of a city (whose roles cover the city and
# the district below it, nothing of the province's own accounts): the two kinds of people a matrix has.
DEMO_PEOPLE = (
    ("admin", "admin", PROVINCE),
    ("editor", "editor", PROVINCE),
    ("reviewer", "reviewer", PROVINCE),
    ("monitor", "monitor", PROVINCE),
    ("city-editor", "editor", CITIES[0]),
    ("city-reviewer", "reviewer", CITIES[0]),
)


def seed_people(session: Session) -> dict[str, str]:
    """On a database without users: the demo organisations and one user per role, with random passwords.

    Returns ``{name: password}`` to show once (only their hashes are kept); empty when users exist already.
    """
    if services.users_exist(session):
        return {}
    _organizations(session)
    passwords: dict[str, str] = {}
    for name, role, org in DEMO_PEOPLE:
        password = secrets.token_urlsafe(12)
        actor = None if not passwords else services.SYSTEM  # the first user is the bootstrap admin
        services.create_user(session, actor, name, password, [(role, org)])
        passwords[name] = password
    return passwords


def _organizations(session: Session) -> Organization:
    province = services.ensure_organization(session, PROVINCE)
    city = services.ensure_organization(session, CITIES[0], parent=province)
    services.ensure_organization(session, CITIES[1], parent=city)  # a district of the city
    return province


def seed(session: Session, demo_accounts: list[dict[str, Any]], *, with_post: bool = False) -> list[Account]:
    """Create (idempotently) the demo organisations and the given sandbox accounts on the province; optionally
    a demo post by the demo editor, scheduled now. Users: :func:`seed_people`."""
    province = _organizations(session)
    accounts: list[Account] = []
    for spec in demo_accounts:
        existing = session.scalar(select(Account).where(Account.kind == spec["kind"], Account.name == spec["name"]))
        if existing is None:
            existing = services.add_account(
                session,
                services.SYSTEM,
                kind=spec["kind"],
                name=spec["name"],
                credentials=spec["credentials"],
                config=spec.get("config", {}),
                organization=province.id,
            )
        accounts.append(existing)
    editor = session.scalar(select(User).where(User.name == "editor"))
    if with_post and accounts:
        author = services.principal_for(editor, "demo") if editor is not None else services.SYSTEM
        post = services.create_post(
            session,
            author,
            title="网上职工之家正式上线",
            body=DEMO_BODY,
            summary="省总工会网上职工之家今天正式上线。",
            accounts=[a.id for a in accounts],
        )
        services.schedule_post(session, author, post.id, now())
    return accounts
