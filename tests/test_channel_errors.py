"""Every exception of the channel tree survives pickling with its fields (Celery stores exceptions)."""

from __future__ import annotations

import inspect
import pickle
from datetime import UTC, datetime

import pytest

from channels import errors

CLASSES = [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, errors.ChannelError)]


def _make(cls: type[errors.ChannelError]) -> errors.ChannelError:
    if issubclass(cls, errors.QuotaExhausted):
        return cls("quota spent", code=45009, paused_until=datetime(2026, 12, 1, 16, 0, tzinfo=UTC))
    if issubclass(cls, errors.TransientError):
        return cls("slow down", code=429, retry_after=3.5)
    return cls("refused", code="rest_forbidden")


def test_the_tree_is_complete() -> None:
    names = {c.__name__ for c in CLASSES}
    assert {
        "RateLimited",
        "Unavailable",
        "QuotaExhausted",
        "OutcomeUnknown",
        "ContentRejected",
        "InvalidRequest",
        "NeedsReauth",
    } <= names


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_pickle_round_trip(cls: type[errors.ChannelError]) -> None:
    exc = _make(cls)
    again = pickle.loads(pickle.dumps(exc))
    assert type(again) is cls
    assert again.__dict__ == exc.__dict__
    assert str(again) == str(exc)
