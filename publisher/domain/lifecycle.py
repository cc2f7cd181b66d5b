"""The lifecycle of posts and deliveries: one transition table each, and the only code that changes states.

Post::

    draft ─▶ screening ─▶ approved ─▶ scheduled ─▶ publishing ─▶ published
               │  ▲  ├──▶ needs_review ─▶ approved | rejected     ├──▶ partially_published
               │  │  └──▶ rejected ─▶ needs_review (override)     └──▶ failed
               └──┴── (an edit past draft makes a new version and goes back to screening)
    published | partially_published | publishing | failed ─▶ partially_retracted ─▶ retracted
                        (partially_retracted until every copy is gone; ``matrix post retract`` again retries the rest)
    failed ─▶ screening (edited: a new version) … approved ─▶ publishing (its failed deliveries retried with it)

Delivery::

    pending ─▶ sending ─▶ published | awaiting_confirmation | awaiting_manual | unconfirmed
                      ├─▶ retry_wait ─▶ sending …       (transient error: backoff, retry-after)
                      ├─▶ failed                        (permanent, with the platform's reason)
                      └─▶ needs_reauth ─▶ pending       (after the account is re-authorised)
    unconfirmed ─▶ published | awaiting_confirmation | retry_wait (looked up: not there) | failed
    awaiting_confirmation ─▶ published | failed | retracted
    published | awaiting_confirmation ─▶ retracting ─▶ retracted
                                          ├─▶ retracting …     (transient error: backoff, retry-after)
                                          └─▶ retract_failed ─▶ retracting (the post retracted again)
    published ─▶ retracted                (no retraction API: deleted by hand, ``matrix delivery removed``)

A delivery that reaches ``published`` after its post was retracted goes on to ``retracting`` at once
(:func:`publisher.delivery.outcomes.mark_published` is every path's way to ``published``).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

from core.errors import Conflict


class PostState(StrEnum):
    """Where a post is in its life (stored as its value)."""

    DRAFT = "draft"
    SCREENING = "screening"
    NEEDS_REVIEW = "needs_review"
    APPROVED = "approved"
    REJECTED = "rejected"
    SCHEDULED = "scheduled"
    PUBLISHING = "publishing"
    PUBLISHED = "published"
    PARTIALLY_PUBLISHED = "partially_published"
    FAILED = "failed"
    PARTIALLY_RETRACTED = "partially_retracted"
    RETRACTED = "retracted"


class DeliveryState(StrEnum):
    """Where one post on one account is (stored as its value)."""

    PENDING = "pending"
    SENDING = "sending"
    RETRY_WAIT = "retry_wait"
    UNCONFIRMED = "unconfirmed"
    AWAITING_CONFIRMATION = "awaiting_confirmation"
    AWAITING_MANUAL = "awaiting_manual"
    NEEDS_REAUTH = "needs_reauth"
    FAILED = "failed"
    PUBLISHED = "published"
    RETRACTING = "retracting"
    RETRACT_FAILED = "retract_failed"
    RETRACTED = "retracted"
    CANCELLED = "cancelled"


class IllegalTransition(Conflict):
    """A state change that the lifecycle does not allow."""

    def __init__(self, kind: str, obj_id: int | None, current: str, target: str) -> None:
        allowed = ", ".join(sorted(TABLES[kind].get(current, ()))) or "nothing"
        super().__init__(f"{kind} {obj_id}: cannot go from {current} to {target} (allowed: {allowed})")
        self.kind, self.obj_id, self.current, self.target = kind, obj_id, current, target

    def __reduce__(self):
        return (type(self), (self.kind, self.obj_id, self.current, self.target))


P, D = PostState, DeliveryState

POST_TRANSITIONS: dict[PostState, frozenset[PostState]] = {
    P.DRAFT: frozenset({P.DRAFT, P.SCREENING}),
    P.SCREENING: frozenset({P.SCREENING, P.APPROVED, P.NEEDS_REVIEW, P.REJECTED}),
    P.NEEDS_REVIEW: frozenset({P.SCREENING, P.APPROVED, P.REJECTED}),
    # publishing: a failed post, edited and approved again, is retried (its failed deliveries take the new version)
    P.APPROVED: frozenset({P.SCREENING, P.SCHEDULED, P.REJECTED, P.PUBLISHING}),
    P.REJECTED: frozenset({P.SCREENING, P.NEEDS_REVIEW}),  # needs_review: a person overrides screening
    P.SCHEDULED: frozenset({P.SCREENING, P.APPROVED, P.PUBLISHING, P.REJECTED}),
    P.PUBLISHING: frozenset(
        {P.PUBLISHING, P.PUBLISHED, P.PARTIALLY_PUBLISHED, P.FAILED, P.PARTIALLY_RETRACTED, P.RETRACTED}
    ),
    P.PUBLISHED: frozenset({P.PARTIALLY_RETRACTED, P.RETRACTED, P.PUBLISHING}),
    P.PARTIALLY_PUBLISHED: frozenset(
        {P.PUBLISHING, P.PUBLISHED, P.PARTIALLY_RETRACTED, P.RETRACTED, P.PARTIALLY_PUBLISHED}
    ),
    P.FAILED: frozenset(
        {P.PUBLISHING, P.FAILED, P.PARTIALLY_RETRACTED, P.RETRACTED, P.SCREENING}
    ),  # screening: an edit
    # until every copy is gone; nothing goes back to publishing (a retracted post's late deliveries are retracted)
    P.PARTIALLY_RETRACTED: frozenset({P.PARTIALLY_RETRACTED, P.RETRACTED}),
    P.RETRACTED: frozenset(),
}

DELIVERY_TRANSITIONS: dict[DeliveryState, frozenset[DeliveryState]] = {
    D.PENDING: frozenset({D.SENDING, D.CANCELLED, D.RETRY_WAIT, D.NEEDS_REAUTH}),
    D.SENDING: frozenset(
        {D.PUBLISHED, D.AWAITING_CONFIRMATION, D.AWAITING_MANUAL, D.UNCONFIRMED, D.RETRY_WAIT, D.FAILED, D.NEEDS_REAUTH}
    ),
    D.RETRY_WAIT: frozenset({D.SENDING, D.CANCELLED, D.FAILED, D.NEEDS_REAUTH}),
    D.UNCONFIRMED: frozenset({D.PUBLISHED, D.AWAITING_CONFIRMATION, D.RETRY_WAIT, D.FAILED, D.CANCELLED}),
    D.AWAITING_CONFIRMATION: frozenset({D.PUBLISHED, D.FAILED, D.RETRACTED, D.UNCONFIRMED, D.RETRACTING}),
    D.AWAITING_MANUAL: frozenset({D.PUBLISHED, D.CANCELLED}),
    D.NEEDS_REAUTH: frozenset({D.PENDING, D.CANCELLED}),
    D.FAILED: frozenset({D.PENDING, D.CANCELLED}),
    D.PUBLISHED: frozenset({D.RETRACTING, D.RETRACTED}),  # retracted directly: deleted by hand (no API)
    D.RETRACTING: frozenset({D.RETRACTING, D.RETRACTED, D.RETRACT_FAILED}),
    D.RETRACT_FAILED: frozenset({D.RETRACTING, D.RETRACTED}),
    D.RETRACTED: frozenset(),
    D.CANCELLED: frozenset(),
}

TABLES: dict[str, dict] = {"post": POST_TRANSITIONS, "delivery": DELIVERY_TRANSITIONS}

#: Delivery states in which nothing more will happen without a person.
DELIVERY_SETTLED = frozenset({D.PUBLISHED, D.FAILED, D.NEEDS_REAUTH, D.RETRACTED, D.CANCELLED, D.RETRACT_FAILED})
#: Delivery states in which a copy may be live on the platform (or is about to be): a retraction is not over.
COPY_MAY_BE_LIVE = frozenset(
    {D.SENDING, D.UNCONFIRMED, D.AWAITING_CONFIRMATION, D.PUBLISHED, D.RETRACTING, D.RETRACT_FAILED}
)
#: Post states of a post being (or that was) retracted: every path to a live copy retracts it instead.
RETRACTION = frozenset({P.PARTIALLY_RETRACTED, P.RETRACTED})
#: Delivery states a worker may claim.
DELIVERY_READY = frozenset({D.PENDING, D.RETRY_WAIT})
#: Post states in which the content may still be edited (failed: nothing of it is live anywhere).
EDITABLE = frozenset({P.DRAFT, P.SCREENING, P.NEEDS_REVIEW, P.APPROVED, P.REJECTED, P.SCHEDULED, P.FAILED})
#: Post states from which a retraction may start (or, partially_retracted, be run again for what is left).
RETRACTABLE = frozenset({P.PUBLISHING, P.PUBLISHED, P.PARTIALLY_PUBLISHED, P.FAILED, P.PARTIALLY_RETRACTED})


class HasState(Protocol):
    """Anything with an id and a state column (a post, a delivery)."""

    id: int
    state: str


def can(kind: str, current: str, target: str) -> bool:
    """True if ``kind`` (post | delivery) may go from ``current`` to ``target``."""
    return target in TABLES[kind].get(current, frozenset())


def transition(kind: str, obj: HasState, target: str) -> str:
    """Move ``obj`` to ``target`` or raise :class:`IllegalTransition`; returns the previous state."""
    previous = obj.state
    if not can(kind, previous, target):
        raise IllegalTransition(kind, obj.id, previous, target)
    obj.state = str(target)
    return previous


def post_state_from_deliveries(states: list[str]) -> PostState:
    """Derive a publishing post's state from its deliveries' states."""
    if not states:
        return P.PUBLISHING
    live = [s for s in states if s != D.CANCELLED]
    if live and all(s == D.PUBLISHED for s in live):
        return P.PUBLISHED
    if any(s not in DELIVERY_SETTLED for s in live):
        return P.PUBLISHING
    if any(s == D.PUBLISHED for s in live):
        return P.PARTIALLY_PUBLISHED
    return P.FAILED


def retraction_state(states: list[str]) -> PostState:
    """A retracted post's state from its deliveries' states: ``retracted`` once no copy may be live anywhere."""
    return P.PARTIALLY_RETRACTED if any(s in COPY_MAY_BE_LIVE for s in states) else P.RETRACTED
