"""Organisations: the matrix's tree and the other names people write for its organisations (people and their roles
on it: :mod:`publisher.services.people`).

An **alias** (省总工会, 江苏总工会, 省总 for 江苏省总工会) makes the monitor count a text naming it as a mention of the
organisation (``monitor.pipeline``). Aliases are compared in the form the monitor matches them in
(:func:`moderation.normalize.normalize_term`: width, case, traditional characters and spaces folded), so 江蘇總工會
and 江苏总工会 are one alias. Across the whole tree, no alias may be another organisation's name or alias: a text
naming it would be counted as a mention of two organisations, and the monitor could not tell which one is meant.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import Conflict, InvalidInput, NotFound
from moderation.normalize import normalize_term
from publisher.domain.models import Organization, OrganizationAlias
from publisher.services.common import LABEL_MAX, audit, check_length, get
from publisher.services.people import Principal, find_organization, require, visible_orgs

# At least this many characters once normalised: a one-character alias (总, 工) is in nearly every text, and every
# text would then mention the organisation.
ALIAS_MIN = 2
# Aliases per organisation: a handful are in use (the full name's short forms); the cap keeps a script's mistake
# from putting thousands into the matcher every monitor poll builds.
ALIASES_PER_ORG_MAX = 50


def ensure_organization(session: Session, name: str, parent: Organization | None = None) -> Organization:
    """Get or create an organisation by name. A new one may not take a name that is already an alias of another
    (:class:`Conflict`): the monitor would count a mention of that name for both."""
    check_length("organisation name", name, LABEL_MAX)
    org = session.scalar(select(Organization).where(Organization.name == name))
    if org is None:
        # only against the aliases: names that normalise alike were allowed before aliases existed, and still are
        _check_free(session, name, None, what="organisation name", names=False)
        org = Organization(name=name, parent_id=parent.id if parent else None)
        session.add(org)
        session.flush()
    return org


def _check_free(session: Session, value: str, own_id: int | None, *, what: str, names: bool = True) -> None:
    """:class:`Conflict` if ``value``, normalised, is already an alias in the tree (``own_id``'s own included)
    or, with ``names``, an organisation's name (``own_id``'s own too). One read of the names and one of the
    aliases: the tree is a few hundred organisations."""
    wanted = normalize_term(value)
    all_names = dict(session.execute(select(Organization.id, Organization.name)).all())
    for org_id, name in all_names.items() if names else ():
        if normalize_term(name) == wanted:
            whose = "its own name" if org_id == own_id else f"the name of organisation {name}"
            raise Conflict(f"{what} {value!r} is {whose}")
    for org_id, alias in session.execute(select(OrganizationAlias.organization_id, OrganizationAlias.alias)):
        if normalize_term(alias) == wanted:
            as_written = "" if alias == value else f" (as {alias!r})"
            raise Conflict(f"{what} {value!r} is already an alias of {all_names.get(org_id, org_id)}{as_written}")


def _clean_alias(alias: str) -> str:
    """The alias as stored (surrounding blanks off), or :class:`InvalidInput` saying what is wrong with it."""
    alias = alias.strip()
    if not alias:
        raise InvalidInput("empty alias")
    check_length("alias", alias, LABEL_MAX)
    if len(normalize_term(alias)) < ALIAS_MIN:
        raise InvalidInput(f"alias {alias!r} is too short to match: at least {ALIAS_MIN} characters")
    return alias


def _aliases_of(session: Session, org_id: int) -> list[OrganizationAlias]:
    query = select(OrganizationAlias).where(OrganizationAlias.organization_id == org_id)
    return list(session.scalars(query.order_by(OrganizationAlias.alias)))


def _row(session: Session, org: Organization) -> dict[str, object]:
    return {
        "organization_id": org.id,
        "organization": org.name,
        "aliases": [a.alias for a in _aliases_of(session, org.id)],
    }


def add_alias(session: Session, actor: Principal, org_ref: int | str, alias: str) -> dict[str, object]:
    """Give an organisation another name the monitor matches (an admin of it or above: the permission that sets
    its lists and review chain). Audited as ``org.alias_add``. Returns the organisation's aliases after it."""
    org = find_organization(session, org_ref)
    require(session, actor, "policy.manage", org.id)
    alias = _clean_alias(alias)
    # The organisation's row locked (PostgreSQL): two adds to one organisation check and store one after the other
    org = get(session, Organization, org.id, lock=True)
    if len(_aliases_of(session, org.id)) >= ALIASES_PER_ORG_MAX:
        raise InvalidInput(f"{org.name} has {ALIASES_PER_ORG_MAX} aliases, the most it may have; remove one first")
    _check_free(session, alias, org.id, what="alias")
    session.add(OrganizationAlias(organization_id=org.id, alias=alias))
    session.flush()
    audit(session, actor, "org.alias_add", org, alias=alias)
    return _row(session, org)


def remove_alias(session: Session, actor: Principal, org_ref: int | str, alias: str) -> dict[str, object]:
    """Remove an alias of an organisation (as written or any spelling that normalises the same); admins of it.
    Audited as ``org.alias_remove``. :class:`NotFound` if it has no such alias."""
    org = find_organization(session, org_ref)
    require(session, actor, "policy.manage", org.id)
    wanted = normalize_term(alias)
    found = next((a for a in _aliases_of(session, org.id) if normalize_term(a.alias) == wanted), None)
    if found is None:
        raise NotFound(f"{org.name} has no alias {alias.strip()!r}")
    session.delete(found)
    session.flush()
    audit(session, actor, "org.alias_remove", org, alias=found.alias)
    return _row(session, org)


def alias_rows(session: Session, actor: Principal, org_ref: int | str | None = None) -> list[dict[str, object]]:
    """The aliases of one organisation (anyone with a role on it or above), or, without ``org_ref``, of every
    organisation in the actor's subtrees, by name; each row: ``organization_id``, ``organization``, ``aliases``."""
    if org_ref is not None:
        org = find_organization(session, org_ref)
        require(session, actor, "post.view", org.id)
        return [_row(session, org)]
    visible = visible_orgs(session, actor, "post.view")
    orgs = session.scalars(select(Organization).order_by(Organization.name))
    by_org: dict[int, list[str]] = {}
    for org_id, alias in session.execute(
        select(OrganizationAlias.organization_id, OrganizationAlias.alias).order_by(OrganizationAlias.alias)
    ):
        by_org.setdefault(org_id, []).append(alias)
    return [
        {"organization_id": o.id, "organization": o.name, "aliases": by_org.get(o.id, [])}
        for o in orgs
        if visible is None or o.id in visible
    ]
