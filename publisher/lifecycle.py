"""The lifecycle of posts and deliveries: one transition table each, and the only code that changes states.

Post::

    draft ─▶ screening ─▶ approved ─▶ scheduled ─▶ publishing ─▶ published
               │  ▲  ├──▶ needs_review ─▶ approved | rejected     ├──▶ partially_published
               │  │  └──▶ rejected                                └──▶ failed
               └──┴── (an edit past draft makes a new version and goes back to screening)
    published | partially_published ─▶ retracted

Delivery::

    pending ─▶ sending ─▶ published | awaiting_confirmation | awaiting_manual | unconfirmed
                      ├─▶ retry_wait ─▶ sending …       (transient error: backoff, retry-after)
                      ├─▶ failed                        (permanent, with the platform's reason)
                      └─▶ needs_reauth ─▶ pending       (after the account is re-authorised)
    unconfirmed ─▶ published | awaiting_confirmation | retry_wait (looked up: not there) | failed
    awaiting_confirmation ─▶ published | failed | retracted
    published ─▶ retracted
"""

from __future__ import annotations

from typing import Protocol

from publisher.errors import Conflict


class IllegalTransition(Conflict):
    """A state change that the lifecycle does not allow."""

    def __init__(self, kind: str, obj_id: int | None, current: str, target: str) -> None:
        allowed = ", ".join(sorted(TABLES[kind].get(current, ()))) or "nothing"
        super().__init__(f"{kind} {obj_id}: cannot go from {current} to {target} (allowed: {allowed})")
        self.kind, self.obj_id, self.current, self.target = kind, obj_id, current, target

    def __reduce__(self):
        return (type(self), (self.kind, self.obj_id, self.current, self.target))


POST_TRANSITIONS: dict[str, frozenset[str]] = {
    "draft": frozenset({"draft", "screening"}),
    "screening": frozenset({"screening", "approved", "needs_review", "rejected"}),
    "needs_review": frozenset({"screening", "approved", "rejected"}),
    "approved": frozenset({"screening", "scheduled", "rejected"}),
    "rejected": frozenset({"screening"}),
    "scheduled": frozenset({"screening", "approved", "publishing", "rejected"}),
    "publishing": frozenset({"publishing", "published", "partially_published", "failed", "retracted"}),
    "published": frozenset({"retracted", "publishing"}),
    "partially_published": frozenset({"publishing", "published", "retracted", "partially_published"}),
    "failed": frozenset({"publishing", "failed", "retracted"}),
    "retracted": frozenset(),
}

DELIVERY_TRANSITIONS: dict[str, frozenset[str]] = {
    "pending": frozenset({"sending", "cancelled", "retry_wait", "needs_reauth"}),
    "sending": frozenset(
        {
            "published",
            "awaiting_confirmation",
            "awaiting_manual",
            "unconfirmed",
            "retry_wait",
            "failed",
            "needs_reauth",
        }
    ),
    "retry_wait": frozenset({"sending", "cancelled", "failed", "needs_reauth"}),
    "unconfirmed": frozenset({"published", "awaiting_confirmation", "retry_wait", "failed", "cancelled"}),
    "awaiting_confirmation": frozenset({"published", "failed", "retracted", "unconfirmed"}),
    "awaiting_manual": frozenset({"published", "cancelled"}),
    "needs_reauth": frozenset({"pending", "cancelled"}),
    "failed": frozenset({"pending", "cancelled"}),
    "published": frozenset({"retracted"}),
    "retracted": frozenset(),
    "cancelled": frozenset(),
}

TABLES = {"post": POST_TRANSITIONS, "delivery": DELIVERY_TRANSITIONS}

#: Delivery states in which nothing more will happen without a person.
DELIVERY_SETTLED = frozenset({"published", "failed", "needs_reauth", "retracted", "cancelled"})
#: Delivery states that count as "not published, and stuck there until someone acts".
DELIVERY_FAILED = frozenset({"failed", "needs_reauth"})
#: Post states in which the content may still be edited.
EDITABLE = frozenset({"draft", "screening", "needs_review", "approved", "rejected", "scheduled"})


class HasState(Protocol):
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
    obj.state = target
    return previous


def post_state_from_deliveries(states: list[str]) -> str:
    """Derive a publishing post's state from its deliveries' states."""
    if not states:
        return "publishing"
    live = [s for s in states if s != "cancelled"]
    if live and all(s == "published" for s in live):
        return "published"
    if any(s not in DELIVERY_SETTLED for s in live):
        return "publishing"
    if any(s == "published" for s in live):
        return "partially_published"
    return "failed"
