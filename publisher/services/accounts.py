"""Platform accounts: register, find, check credentials with the platform, re-authorise."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from channels.base import channel_kinds
from core.broker import Task, enqueue
from core.clock import now
from core.crypto import encrypt_credentials
from core.db import after_commit, session_scope
from core.errors import Conflict, InvalidInput, NotFound
from publisher.domain import lifecycle
from publisher.domain.models import Account, Delivery, Organization, Post
from publisher.services.channels import check_credentials
from publisher.services.common import LABEL_MAX, audit, check_length, get
from publisher.services.organizations import ensure_organization
from publisher.services.people import Principal, find_organization, require


def add_account(
    session: Session,
    actor: Principal,
    *,
    kind: str,
    name: str,
    credentials: dict[str, Any],
    config: dict[str, Any] | None = None,
    organization: str | int | None = None,
) -> Account:
    """Register a platform account for an organisation (an admin's; by default the one the admin holds the
    role on); credentials are encrypted at rest (see :func:`check_new_account`)."""
    _require_kind(kind)
    name = name.strip()
    if not name:
        raise InvalidInput("account name is empty")
    check_length("account name", name, LABEL_MAX)
    if session.scalar(select(Account).where(Account.kind == kind, Account.name == name)):
        raise Conflict(f"a {kind} account named {name!r} exists already")
    org = _account_org(session, actor, organization)
    require(session, actor, "account.manage", org.id)
    account = Account(
        organization_id=org.id,
        kind=kind,
        name=name,
        credentials_enc=encrypt_credentials(credentials),
        config=dict(config or {}),
    )
    session.add(account)
    session.flush()
    audit(session, actor, "account.add", account, kind=kind, name=name)
    return account


def _account_org(session: Session, actor: Principal, ref: str | int | None) -> Organization:
    if ref is not None and ref != "":
        if actor.system and isinstance(ref, str) and not ref.isdigit():
            return ensure_organization(session, ref)  # seeding and drills name organisations into being
        return find_organization(session, ref)
    own = sorted({org for role, org in actor.grants if role == "admin"})
    if len(own) != 1:
        raise InvalidInput("name the organisation the account belongs to")
    return get(session, Organization, own[0])


def _require_kind(kind: str) -> None:
    if kind not in channel_kinds():
        raise InvalidInput(f"unknown channel kind {kind!r}; known: {', '.join(channel_kinds())}")


def find_account(session: Session, ref: str | int) -> Account:
    """An account by id or by name (names are unique per kind; an ambiguous name is an error)."""
    # ASCII digits only: str.isdigit() is also true of '²', which int() refuses.
    if isinstance(ref, int) or (str(ref).isascii() and str(ref).isdigit()):
        return get(session, Account, int(ref))
    matches = session.scalars(select(Account).where(Account.name == ref)).all()
    if not matches:
        raise NotFound(f"account {ref!r} not found")
    if len(matches) > 1:
        raise InvalidInput(f"account name {ref!r} is ambiguous; use its id")
    return matches[0]


# Asking the platform happens before the caller's own transaction: a platform call inside it would hold the
# database (on SQLite, its write lock) for the length of a network call, and the token cache that some
# adapters use needs the database too.
def check_new_account(
    actor: Principal, kind: str, name: str, credentials: dict[str, Any], config: dict[str, Any] | None
) -> None:
    """Ask the platform whether a new account's credentials work; :class:`InvalidInput` with its reason if not.

    Only someone who may manage accounts somewhere may make us call a platform (it is an outbound request)."""
    with session_scope() as session:
        require(session, actor, "account.manage")
    _require_kind(kind)
    check_credentials(kind, name.strip(), credentials, dict(config or {}))


def check_new_credentials(actor: Principal, account_id: int, credentials: dict[str, Any]) -> None:
    """Ask the platform whether new credentials for an existing account work (before re-authorising it)."""
    with session_scope() as session:
        account = get(session, Account, account_id)
        require(session, actor, "account.manage", account.organization_id)
        kind, name, config = account.kind, account.name, dict(account.config)
    check_credentials(kind, name, credentials, config, account_id=account_id)


def reauthorize_account(session: Session, actor: Principal, account_id: int, credentials: dict[str, Any]) -> Account:
    """Store new credentials, reactivate the account and release the deliveries that waited for it."""
    account = get(session, Account, account_id, lock=True)
    require(session, actor, "account.manage", account.organization_id)
    account.credentials_enc = encrypt_credentials(credentials)
    account.status, account.status_reason, account.paused_until = "active", None, None
    waiting = session.scalars(
        select(Delivery).where(Delivery.account_id == account.id, Delivery.state == "needs_reauth")
    ).all()
    for delivery in waiting:
        lifecycle.transition("delivery", delivery, "pending")
        delivery.next_attempt_at = now()
    # A post whose only unsettled deliveries waited for this account was settled as failed (or partially
    # published); with them released it is publishing again, so their outcome can still settle it.
    for post_id in sorted({d.post_id for d in waiting}):
        post = get(session, Post, post_id, lock=True)
        if post.state in ("failed", "partially_published"):
            lifecycle.transition("post", post, "publishing")
    audit(session, actor, "account.reauthorize", account, released=len(waiting))
    if waiting:
        after_commit(session, enqueue, Task.DISPATCH_DUE)
    return account
