"""A term-list change re-screens what is live, through the real worker (issue 14, item 8).

A post is published to the WordPress sandbox; an admin then puts a word of it on the organisation's deny-list.
The change wakes the re-screen (after commit), the worker screens the live post again on the screening queue,
and the post's reviewer is told with the new evidence, while the copy stays up: nothing is retracted without
a person.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from core.db import session_scope
from core.notify import Notification
from publisher import services
from publisher.domain.models import LiveFlag, Screening
from publisher.services import rescreen
from tests.support.people import SYSTEM, make_user
from tests.support.stack import UNION, Stack

pytestmark = pytest.mark.timeout(180)

WORD = "技能比武"


def test_a_term_list_change_rescreens_a_published_post(stack: Stack) -> None:
    account = stack.website_account("rescreen")
    reviewer = make_user("rescreen-reviewer", ("reviewer", UNION))
    post_id = stack.publish([account], title="职工技能比武", body=f"本周举行职工{WORD}，欢迎报名参加。")
    stack.wait_for(lambda: stack.post(post_id)["state"] == "published", what="published")
    with session_scope() as s:
        before = s.scalar(select(Screening.fingerprint).order_by(Screening.id.desc()).limit(1))
        assert rescreen.due_posts(s, limit=10) == []  # screened against the current rules: nothing to do

    with session_scope() as s:
        org = services.find_organization(s, UNION)
        services.add_moderation_term(s, SYSTEM, org.id, WORD, list_="deny", severity="review")

    def flagged() -> list[LiveFlag]:
        with session_scope() as s:
            return s.scalars(select(LiveFlag).where(LiveFlag.post_id == post_id)).all()

    (flag,) = stack.wait_for(flagged, timeout=60, what="the live post flagged by the worker's re-screen")
    assert flag.state == "open" and flag.decision == "review" and flag.fingerprint != before
    assert flag.verdict["hits"][0]["text"] == WORD
    with session_scope() as s:
        told = s.scalars(select(Notification).where(Notification.kind == "live_post_flagged")).all()
        assert [n.user_id for n in told] == [reviewer.principal.user_id]
        assert rescreen.due_posts(s, limit=10) == []  # its fingerprint is the new one
    assert stack.post(post_id)["state"] == "published"
    assert [p["status"] for p in stack.wp_posts("rescreen")] == ["publish"]  # still up: a person decides
