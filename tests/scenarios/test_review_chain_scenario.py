"""The review chain through the real stack (issue 9): a post that screening flags waits for two different
reviewers of the right organisations — the posting city's, then its parent's — and is published only then;
the author and a reviewer who approved a step already are refused at every step.
"""

from __future__ import annotations

import pytest

from core.clock import now
from core.db import session_scope
from core.errors import Forbidden
from publisher import services
from tests.support.people import NEIGHBOUR, SYSTEM, make_user
from tests.support.stack import UNION, Stack

pytestmark = [
    pytest.mark.timeout(240),
    pytest.mark.parametrize("stack", ["embedded", "services"], indirect=True, scope="module"),
]

CITY = "chain city"
TWO_STEPS = {
    "applies": "flagged",
    "steps": [{"name": "初审", "role": "reviewer", "at": "own"}, {"name": "复审", "role": "reviewer", "at": "parent"}],
}
FLAGGED = "技能比武通报"  # on the city's deny-list as "review": screening sends the post to people


def test_a_flagged_post_needs_two_reviewers_then_publishes(stack: Stack) -> None:
    password = "abcd efgh ijkl mnop qrst uvwx"
    stack.sandbox_call(
        "POST", "/wp/_sandbox/accounts", json={"site": "chain", "username": "editor", "app_password": password}
    )
    with session_scope() as s:
        union = services.ensure_organization(s, UNION)
        city = services.ensure_organization(s, CITY, parent=union)
        account = services.add_account(s, SYSTEM, kind="website", name="chain site", organization=CITY,
                                       credentials={"username": "editor", "app_password": password},
                                       config={"base_url": "{sandbox}/wp/chain"})  # fmt: skip
        services.add_moderation_term(s, SYSTEM, city.id, FLAGGED, list_="deny", severity="review")
        services.set_review_chain(s, SYSTEM, UNION, TWO_STEPS)
        account_id = account.id
    editor = make_user("chain-editor", ("editor", CITY), ("reviewer", CITY))
    city_reviewer = make_user("chain-city-reviewer", ("reviewer", CITY))
    union_reviewer = make_user("chain-union-reviewer", ("reviewer", UNION))

    with session_scope() as s:
        post = services.create_post(s, editor.principal, title="比武通报", body=f"{FLAGGED}：本周职工技能比武结果。",
                                    accounts=[account_id])  # fmt: skip
        services.schedule_post(s, editor.principal, post.id, now())
        post_id = post.id
    stack.wait_for(lambda: stack.post(post_id)["state"] == "needs_review", what="screened: needs review")

    def approve(person) -> None:
        with session_scope() as s:
            services.review(s, person.principal, post_id, approve=True, reason="ok")

    with pytest.raises(Forbidden, match="their own post"):
        approve(editor)  # a reviewer of the city too, but the author
    with pytest.raises(Forbidden, match=f"may not review posts in {CITY}"):
        approve(make_user("chain-outsider", ("reviewer", NEIGHBOUR)))  # a reviewer of another tree
    approve(city_reviewer)  # 初审
    assert stack.post(post_id)["state"] == "needs_review"
    with pytest.raises(Forbidden, match="approved a step"):
        approve(city_reviewer)
    with pytest.raises(Forbidden, match="复审"):
        approve(make_user("chain-second-city-reviewer", ("reviewer", CITY)))  # the parent's step
    assert stack.wp_posts("chain") == []  # nothing went out before the chain's end
    approve(union_reviewer)  # 复审
    info = stack.wait_for(lambda: (p := stack.post(post_id))["state"] == "published" and p, what="published after 复审")
    assert len(stack.wp_posts("chain")) == 1 and info["deliveries"][0]["state"] == "published"
