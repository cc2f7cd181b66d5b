"""Who is acting, and what they may do where: users, passwords, roles on the organisation tree, tokens and sessions.

Every service takes the acting :class:`Principal` and asks :func:`require` (or filters by :func:`visible_orgs`)
before it reads or changes anything, so the CLI, the API and the web pages cannot differ: this module is the
one place where permissions are decided.

- A **role** (admin, editor, reviewer, monitor) is held on an organisation and covers its whole subtree: a city
  union's reviewer reviews the city's and its districts' posts, nothing of a neighbouring city.
- **Passwords** are Argon2id hashes (argon2-cffi). Five failed sign-ins in a row lock the user out for 15
  minutes, and the refusal says until when; the count is kept even though the refusal is an error.
- **Credentials** are random 256-bit secrets, stored as their SHA-256: personal API tokens (``Authorization:
  Bearer``; shown once, revocable, used by the CLI) and web sessions (a cookie; idle and absolute expiry, a
  CSRF secret that unsafe requests echo).
- The workers act as :data:`SYSTEM`, which passes every check: what they do was decided by a person earlier.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta

import redis
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import ratelimit
from core.clock import format_local, now
from core.db import engine_for, id_in_range, session_scope
from core.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated
from core.settings import get_settings
from publisher.domain.models import ROLES, Credential, Organization, RoleGrant, User
from publisher.services.common import NAME_MAX, ancestors, audit, check_length, subtree

PASSWORD_MIN = 10
PASSWORD_MAX = 200  # argon2 takes any length; a cap keeps one sign-in from costing a megabyte of hashing
MAX_FAILED_SIGN_INS = 5
LOCKOUT = timedelta(minutes=15)
SESSION_IDLE = timedelta(hours=2)
SESSION_ABSOLUTE = timedelta(hours=12)
TOKEN_PREFIX = "mm_"  # noqa: S105 - the prefix that marks our tokens (in logs, in secret scanners), no secret
_TOUCH_EVERY = timedelta(minutes=1)  # last_used_at is written at most this often (not a write per request)

_hasher = PasswordHasher()  # Argon2id with the library's defaults (RFC 9106 low-memory: 64 MiB, t=3, p=4)


@functools.cache
def _dummy_hash() -> str:
    # Verified against when the user does not exist, so a wrong name costs as long as a wrong password; made
    # at first use, not at import (a hash takes ~0.1-0.3 s: every CLI start would pay it).
    return _hasher.hash("not a password of anyone")


# What each action needs: any one of these roles on the object's organisation or above it.
PERMISSIONS: dict[str, frozenset[str]] = {
    "post.view": frozenset({"editor", "reviewer", "monitor", "admin"}),
    "post.write": frozenset({"editor"}),  # create, edit, submit, schedule, cancel, delete, duplicate, retry
    "post.retract": frozenset({"editor", "admin"}),
    "post.review": frozenset({"reviewer", "admin"}),  # the chain's step says which of them
    "delivery.by_hand": frozenset({"editor", "admin"}),  # packages and confirmations of assisted deliveries
    "account.view": frozenset({"editor", "reviewer", "monitor", "admin"}),
    "account.manage": frozenset({"admin"}),
    "policy.manage": frozenset({"admin"}),  # term lists, moderation policies, review chains
    "user.manage": frozenset({"admin"}),
    "audit.view": frozenset({"admin"}),
    "metrics.view": frozenset({"admin"}),  # GET /metrics (or the scrape token)
    "screen": frozenset({"editor", "reviewer", "monitor", "admin"}),
    "monitor.view": frozenset({"monitor", "admin"}),  # the public-opinion monitor: sources, items, stories, rules
    "monitor.manage": frozenset({"monitor", "admin"}),  # add, pause and poll sources; write rules
}
_VERBS = {
    "post.view": "see posts",
    "post.write": "write or schedule posts",
    "post.retract": "retract posts",
    "post.review": "review posts",
    "delivery.by_hand": "handle assisted deliveries",
    "account.view": "see accounts",
    "account.manage": "manage accounts",
    "policy.manage": "change moderation lists, policies or review chains",
    "user.manage": "manage users",
    "audit.view": "read the audit log",
    "metrics.view": "read the metrics",
    "screen": "screen texts",
    "monitor.view": "read the monitor",
    "monitor.manage": "manage monitor sources and rules",
}


@dataclass(frozen=True)
class Principal:
    """The person (or the system) acting: who, with which roles where, and from where (``"api 10.0.0.5"``)."""

    user_id: int | None
    name: str
    grants: tuple[tuple[str, int], ...] = ()  # (role, organisation id)
    source: str = ""
    system: bool = False
    credential_id: int | None = field(default=None, compare=False)

    def roles(self) -> set[str]:
        """The roles held anywhere."""
        return {role for role, _ in self.grants}

    def describe(self) -> str:
        """``name (editor, reviewer)`` for messages."""
        return f"{self.name} ({', '.join(sorted(self.roles())) or 'no role'})"


SYSTEM = Principal(user_id=None, name="system", source="worker", system=True)


def principal_for(user: User, source: str = "", credential_id: int | None = None) -> Principal:
    """The principal of a user row (their grants read now)."""
    grants = tuple(sorted((g.role, g.organization_id) for g in user.grants))
    return Principal(user.id, user.name, grants, source, credential_id=credential_id)


# ------------------------------------------------------------------------------------------ the tree


def holds(session: Session, actor: Principal, roles: Iterable[str], org_id: int) -> bool:
    """Whether ``actor`` holds one of ``roles`` on ``org_id`` or an organisation above it."""
    if actor.system:
        return True
    wanted = set(roles)
    above = set(ancestors(session, org_id))
    return any(role in wanted and org in above for role, org in actor.grants)


def require(session: Session, actor: Principal, action: str, org_id: int | None = None) -> None:
    """Raise :class:`Forbidden` unless ``actor`` may do ``action`` on ``org_id`` (None: somewhere at all).

    The message is one line: who, what, where, and which roles would do.
    """
    if actor.system:
        return
    roles = PERMISSIONS[action]
    if org_id is None:
        if actor.roles() & roles:
            return
        where = ""
    else:
        if holds(session, actor, roles, org_id):
            return
        org = session.get(Organization, org_id)
        where = f" in {org.name if org else f'organisation {org_id}'}"
    raise Forbidden(
        f"{actor.describe()} may not {_VERBS[action]}{where}: that takes {' or '.join(sorted(roles))} there or above"
    )


def visible_orgs(session: Session, actor: Principal, action: str = "post.view") -> set[int] | None:
    """The organisations whose objects ``actor`` may ``action`` (None: all of them, for the system)."""
    if actor.system:
        return None
    roles = PERMISSIONS[action]
    return subtree(session, [org for role, org in actor.grants if role in roles])


# -------------------------------------------------------------------------------------------- users


def _check_password(password: str) -> None:
    if len(password) < PASSWORD_MIN:
        raise InvalidInput(f"a password needs at least {PASSWORD_MIN} characters")
    if len(password) > PASSWORD_MAX:
        raise InvalidInput(f"a password has at most {PASSWORD_MAX} characters")


def _parse_grants(session: Session, grants: Iterable[tuple[str, int | str]]) -> list[tuple[str, int]]:
    parsed: list[tuple[str, int]] = []
    for role, org_ref in grants:
        if role not in ROLES:
            raise InvalidInput(f"unknown role {role!r}; choose from {', '.join(ROLES)}")
        parsed.append((role, find_organization(session, org_ref).id))
    if not parsed:
        raise InvalidInput("a user needs at least one role on an organisation")
    return parsed


def find_organization(session: Session, ref: int | str) -> Organization:
    """An organisation by id or exact name."""
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isascii() and ref.isdigit()):
        # out of the database's integer range no row can have it, and asking would fail instead of finding nothing
        org = session.get(Organization, int(ref)) if id_in_range(int(ref)) else None
    else:
        org = session.scalar(select(Organization).where(Organization.name == ref))
    if org is None:
        raise NotFound(f"organisation {ref!r} not found")
    return org


def users_exist(session: Session) -> bool:
    """Whether any user exists (the first one may be made without signing in: the bootstrap)."""
    return session.scalar(select(User.id).limit(1)) is not None


def create_user(
    session: Session,
    actor: Principal | None,
    name: str,
    password: str,
    grants: Iterable[tuple[str, int | str]],
) -> User:
    """A new user with a password and roles. ``actor`` must be an admin over every organisation granted;
    ``None`` only for the very first user (the bootstrap), who must be an admin."""
    name = name.strip()
    if not name:
        raise InvalidInput("a user needs a name")
    check_length("user name", name, NAME_MAX)
    _check_password(password)
    parsed = _parse_grants(session, grants)
    if actor is None:
        if users_exist(session):
            raise Unauthenticated("sign in as an admin to add users")
        if not any(role == "admin" for role, _ in parsed):
            raise InvalidInput("the first user must be an admin")
    else:
        for _, org in parsed:
            require(session, actor, "user.manage", org)
    if session.scalar(select(User.id).where(User.name == name)) is not None:
        raise Conflict(f"user {name!r} exists already")
    user = User(name=name, password_hash=_hasher.hash(password))
    user.grants = [RoleGrant(role=role, organization_id=org) for role, org in dict.fromkeys(parsed)]
    session.add(user)
    session.flush()
    audit(session, actor or name, "user.create", user, roles=[f"{r}@{o}" for r, o in parsed])
    return user


def find_user(session: Session, ref: int | str) -> User:
    """A user by id or name."""
    if isinstance(ref, int):
        user = session.get(User, ref) if id_in_range(ref) else None
    else:
        user = session.scalar(select(User).where(User.name == ref))
    if user is None:
        raise NotFound(f"user {ref!r} not found")
    return user


def _require_over(session: Session, actor: Principal, user: User) -> None:
    """An admin over every organisation the user holds a role on (or the user themselves for their password)."""
    for grant in user.grants:
        require(session, actor, "user.manage", grant.organization_id)
    if not user.grants:
        require(session, actor, "user.manage")


def set_password(session: Session, actor: Principal, ref: int | str, password: str) -> User:
    """Set a user's password (themselves, or an admin over them); their sessions and tokens stay valid except
    sessions, which end: a changed password should sign out a browser someone else left open."""
    user = find_user(session, ref)
    if actor.user_id != user.id:
        _require_over(session, actor, user)
    _check_password(password)
    user.password_hash = _hasher.hash(password)
    user.failed_logins, user.locked_until = 0, None
    for cred in user_credentials(session, user.id, kind="session"):
        cred.revoked_at = now()
    audit(session, actor, "user.password", user)
    return user


def disable_user(session: Session, actor: Principal, ref: int | str) -> User:
    """Disable a user: they cannot sign in, and every token and session of theirs stops working."""
    user = find_user(session, ref)
    if actor.user_id == user.id:
        raise Conflict("you cannot disable yourself")
    _require_over(session, actor, user)
    user.disabled = True
    for cred in user_credentials(session, user.id):
        cred.revoked_at = now()
    audit(session, actor, "user.disable", user)
    return user


def grant_role(session: Session, actor: Principal, ref: int | str, role: str, org_ref: int | str) -> User:
    """Give a user a role on an organisation (an admin over that organisation)."""
    user = find_user(session, ref)
    ((role, org),) = _parse_grants(session, [(role, org_ref)])
    require(session, actor, "user.manage", org)
    if all((g.role, g.organization_id) != (role, org) for g in user.grants):
        user.grants.append(RoleGrant(role=role, organization_id=org))
    audit(session, actor, "user.grant", user, role=role, organization=org)
    return user


def user_rows(session: Session, actor: Principal) -> list[dict]:
    """The users an admin looks after (those with a role in the admin's subtrees), with their roles."""
    require(session, actor, "user.manage")
    orgs = visible_orgs(session, actor, "user.manage")
    names = dict(session.execute(select(Organization.id, Organization.name)).all())
    rows = []
    for user in session.scalars(select(User).order_by(User.id)):
        if orgs is not None and not any(g.organization_id in orgs for g in user.grants):
            continue
        rows.append(
            {
                "id": user.id,
                "name": user.name,
                "disabled": user.disabled,
                "roles": [{"role": g.role, "organization": names.get(g.organization_id)} for g in user.grants],
            }
        )
    return rows


# ---------------------------------------------------------------------------------------- signing in


class LockedOut(Unauthenticated):
    """Too many failed sign-ins in a row; the message says when to try again."""

    status_code = 429


SIGN_IN_BURST = 10  # sign-ins one source (an address) may try at once ...
SIGN_IN_EVERY_S = 6.0  # ... and then one per this many seconds: guessing many users' passwords is slow too


@functools.lru_cache(maxsize=4)
def _sign_in_limiter(broker_url: str, database_url: str) -> ratelimit.SharedLimiter:
    # The kernel's shared GCRA limiter as a token bucket: a slot granted within max_wait counts as allowed
    # at once (never slept on), so SIGN_IN_BURST attempts pass together and the rest are refused.
    options = {"max_wait_s": (SIGN_IN_BURST - 1) * SIGN_IN_EVERY_S, "error": _too_many}
    if broker_url.startswith(("redis://", "rediss://")):
        return ratelimit.RedisLimiter(redis.Redis.from_url(broker_url), **options)
    return ratelimit.SqlLimiter(engine_for(database_url), **options)


def _too_many(message: str, *, retry_after: float | None = None) -> LockedOut:
    wait = f"try again in {retry_after:.0f} s" if retry_after is not None else "try again later"
    return LockedOut(f"too many sign-ins from this address: {wait}")


def sign_in(name: str, password: str, *, source: str = "") -> Principal:
    """Check a name and password (its own transaction: a failure is counted even though it raises).

    Raises :class:`Unauthenticated` (one message for an unknown name and a wrong password, so names cannot be
    probed) or :class:`LockedOut` after :data:`MAX_FAILED_SIGN_INS` failures in a row, until the lock ends.
    """
    if source:  # per address, before any work: a password guesser moving from user to user is slowed too
        settings = get_settings()
        _sign_in_limiter(settings.broker_url, settings.database_url).reserve(f"signin:{source}", 1.0 / SIGN_IN_EVERY_S)
    if len(password) > PASSWORD_MAX or len(name) > NAME_MAX:
        raise Unauthenticated("wrong user name or password")
    failure: Unauthenticated | None = None
    with session_scope() as session:
        user = session.scalar(select(User).where(User.name == name.strip()).with_for_update())
        current = now()
        if user is not None and user.locked_until is not None and user.locked_until > current:
            raise LockedOut(f"too many failed sign-ins: try again after {format_local(user.locked_until)}")
        if user is None or user.disabled or user.password_hash is None:
            _verify(_dummy_hash(), password)  # the same cost as a real check
            raise Unauthenticated("wrong user name or password")
        if not _verify(user.password_hash, password):
            user.failed_logins += 1
            if user.failed_logins >= MAX_FAILED_SIGN_INS:
                user.locked_until = current + LOCKOUT
                user.failed_logins = 0
                audit(session, name, "user.locked_out", user, source=source)
                failure = LockedOut(f"too many failed sign-ins: try again after {format_local(user.locked_until)}")
            else:
                failure = Unauthenticated("wrong user name or password")
        else:
            user.failed_logins, user.locked_until = 0, None
            if _hasher.check_needs_rehash(user.password_hash):
                user.password_hash = _hasher.hash(password)
            principal = principal_for(user, source)
    if failure is not None:
        raise failure  # after the commit: the count is kept
    return principal


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def issue_credential(
    session: Session, actor: Principal, *, kind: str, name: str = "", ttl: timedelta | None = None
) -> tuple[Credential, str, str | None]:
    """A new token or session for ``actor`` themselves: (row, the secret — shown once —, the CSRF secret for a
    session). Sessions expire after :data:`SESSION_ABSOLUTE` at the latest."""
    if actor.user_id is None:
        raise Forbidden("only a user can hold a token")
    if kind not in ("token", "session"):
        raise InvalidInput("kind is 'token' or 'session'")
    check_length("token name", name, NAME_MAX)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32) if kind == "session" else None
    lifetime = SESSION_ABSOLUTE if kind == "session" else ttl
    expires = now() + lifetime if lifetime else None
    cred = Credential(
        user_id=actor.user_id,
        kind=kind,
        name=name,
        secret_hash=_digest(secret),
        csrf_hash=_digest(csrf) if csrf else None,
        expires_at=expires,
        source=actor.source[:100],
    )
    session.add(cred)
    session.flush()
    audit(session, actor, f"{kind}.issue", cred, name=name)
    return cred, secret, csrf


def authenticate(session: Session, secret: str, *, source: str = "", kind: str | None = None) -> Principal:
    """The principal a bearer token or session cookie stands for, or :class:`Unauthenticated` saying why not."""
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 100:
        raise Unauthenticated("not a media-matrix token: sign in again")
    cred = session.scalar(select(Credential).where(Credential.secret_hash == _digest(secret)))
    current = now()
    if cred is None or (kind is not None and cred.kind != kind):
        raise Unauthenticated("unknown token: sign in again")
    if cred.revoked_at is not None:
        raise Unauthenticated("this token was revoked: sign in again")
    if cred.expires_at is not None and cred.expires_at <= current:
        raise Unauthenticated("this sign-in has expired: sign in again")
    if cred.kind == "session" and cred.last_used_at and cred.last_used_at + SESSION_IDLE <= current:
        raise Unauthenticated("signed out after two idle hours: sign in again")
    user = cred.user
    if user.disabled:
        raise Unauthenticated(f"user {user.name} is disabled")
    if cred.last_used_at is None or current - cred.last_used_at >= _TOUCH_EVERY:
        cred.last_used_at = current
    return principal_for(user, source, credential_id=cred.id)


def csrf_ok(session: Session, actor: Principal, token: str | None) -> bool:
    """Whether ``token`` is the CSRF secret of the session ``actor`` signed in with."""
    if actor.credential_id is None or not token:
        return False
    cred = session.get(Credential, actor.credential_id)
    return bool(cred and cred.csrf_hash and hmac.compare_digest(cred.csrf_hash, _digest(token)))


def user_credentials(session: Session, user_id: int, *, kind: str | None = None) -> list[Credential]:
    """A user's credentials that are not revoked."""
    query = select(Credential).where(Credential.user_id == user_id, Credential.revoked_at.is_(None))
    if kind:
        query = query.where(Credential.kind == kind)
    return list(session.scalars(query.order_by(Credential.id)))


def revoke_credential(session: Session, actor: Principal, credential_id: int) -> Credential:
    """Revoke a token or session of one's own (or, for an admin, of a user they look after)."""
    cred = session.get(Credential, credential_id) if id_in_range(credential_id) else None
    if cred is None or cred.revoked_at is not None:
        raise NotFound(f"token {credential_id} not found")
    if cred.user_id != actor.user_id:
        _require_over(session, actor, cred.user)
    cred.revoked_at = now()
    audit(session, actor, f"{cred.kind}.revoke", cred)
    return cred


def token_rows(session: Session, actor: Principal) -> list[dict]:
    """The signed-in user's tokens and sessions (never their secrets)."""
    if actor.user_id is None:
        return []
    return [
        {
            "id": c.id,
            "kind": c.kind,
            "name": c.name,
            "created_at": format_local(c.created_at),
            "last_used_at": format_local(c.last_used_at),
            "expires_at": format_local(c.expires_at),
        }
        for c in user_credentials(session, actor.user_id)
    ]


def whoami(session: Session, actor: Principal) -> dict:
    """Who the principal is: name, roles with organisation names, where they act from."""
    names = dict(session.execute(select(Organization.id, Organization.name)).all())
    return {
        "id": actor.user_id,
        "name": actor.name,
        "roles": [{"role": role, "organization": names.get(org), "organization_id": org} for role, org in actor.grants],
        "source": actor.source,
    }
