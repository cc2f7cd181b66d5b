"""The one-step retraction of a live post that a re-screen flagged, shared by the CLI, the API and the web page.

The services decide (:func:`publisher.services.rescreen.retraction_for`: a reviewer of the post's organisation,
an open flag, a post that can be retracted); the retraction itself is the delivery layer's, run as for
``matrix post retract``; the flag is closed after it began, so a retraction refused leaves the flag open.
"""

from __future__ import annotations

from typing import Any

from core.db import session_scope
from publisher.delivery import retract
from publisher.services import Principal, rescreen


def retract_flagged(actor: Principal, flag_id: int) -> tuple[int, list[dict[str, Any]]]:
    """Retract the flagged post everywhere and close its flag as ``retracted``: the post's id, and one line per
    delivery, as :func:`publisher.delivery.retract.retract_post` reports."""
    with session_scope() as session:
        post_id, acting = rescreen.retraction_for(session, actor, flag_id)
    lines = retract.retract_post(acting, post_id)
    with session_scope() as session:
        rescreen.close_flag(session, actor, flag_id, state="retracted")
    return post_id, lines
