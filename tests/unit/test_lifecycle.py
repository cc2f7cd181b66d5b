"""The transition tables: legal moves pass, illegal ones raise a clear error, post state derivation."""

from __future__ import annotations

import pickle
from types import SimpleNamespace

import pytest

from publisher.domain import lifecycle
from publisher.domain.lifecycle import IllegalTransition, post_state_from_deliveries, transition


def test_every_target_state_is_a_known_state() -> None:
    for table in lifecycle.TABLES.values():
        for targets in table.values():
            assert targets <= set(table), targets - set(table)


def test_illegal_transition_names_the_allowed_ones() -> None:
    post = SimpleNamespace(id=7, state="draft")
    with pytest.raises(IllegalTransition) as exc:
        transition("post", post, "published")
    assert "post 7: cannot go from draft to published" in str(exc.value)
    assert "screening" in str(exc.value)
    assert post.state == "draft"
    assert str(pickle.loads(pickle.dumps(exc.value))) == str(exc.value)


def test_published_post_can_be_retracted_but_not_edited_back() -> None:
    post = SimpleNamespace(id=1, state="published")
    with pytest.raises(IllegalTransition):
        transition("post", post, "screening")
    transition("post", post, "retracted")
    assert post.state == "retracted"


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        (["published", "published"], "published"),
        (["published", "failed"], "partially_published"),
        (["published", "needs_reauth"], "partially_published"),
        (["failed", "failed"], "failed"),
        (["published", "sending"], "publishing"),
        (["published", "awaiting_confirmation"], "publishing"),
        (["published", "cancelled"], "published"),
        ([], "publishing"),
    ],
)
def test_post_state_from_deliveries(states, expected) -> None:
    assert post_state_from_deliveries(states) == expected
