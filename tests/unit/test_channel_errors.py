"""The channel exception tree, and how the base class maps replies onto it.

Every exception survives pickling with its fields (Celery stores exceptions). The base class maps error
replies from an adapter's tables (codes, statuses, ``Retry-After``); the adapters' own tables are
covered by their contract tests, the mechanism itself here, with a made-up platform.
"""

from __future__ import annotations

import inspect
import pickle
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from channels import errors
from channels.base import AccountInfo, Channel, as_error_code, parse_retry_after

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


# ------------------------------------------------------------------- the base class's reply mapping


class _Envelope(Channel):
    """A made-up platform: HTTP 200 + {"err": N, "msg": …} on success paths, a table of each kind."""

    kind = "envelope"
    ERROR_BODY_ON = "success"
    ERROR_CODE_KEYS = ("err", "code")
    ERROR_MESSAGE_KEYS = ("msg",)
    ERROR_MAP = {7: errors.ContentRejected, "quota": errors.QuotaExhausted, 9: errors.RateLimited}
    STATUS_MAP = {403: errors.NeedsReauth}
    quota_timezone = ZoneInfo("Asia/Shanghai")


def _reply(status: int = 200, **kwargs: Any) -> errors.ChannelError | None:
    """What ``_check`` makes of one reply (``None``: not an error)."""
    response = httpx.Response(status, request=httpx.Request("GET", "https://api.example/x"), **kwargs)
    with _Envelope(AccountInfo(1, "envelope", "t", {})) as channel:
        try:
            channel._check(response)
        except errors.ChannelError as exc:
            return exc
    return None


def test_body_codes_map_from_the_table() -> None:
    assert _reply(json={"err": 0, "data": 1}) is None
    assert _reply(json={"data": 1}) is None and _reply(text="not json") is None
    exc = _reply(json={"err": 7, "msg": "banned words"})
    assert type(exc) is errors.ContentRejected and exc.code == 7 and "banned words" in str(exc)
    # the first key present counts, and a number sent as a string is the same code
    assert _reply(json={"err": "7", "code": 9}).code == 7
    assert type(_reply(json={"code": 9}, headers={"Retry-After": "12"})) is errors.RateLimited
    assert _reply(json={"code": 9}, headers={"Retry-After": "12"}).retry_after == 12
    unknown = _reply(json={"err": 12345})
    assert type(unknown) is errors.InvalidRequest and unknown.code == 12345


def test_quota_pauses_until_midnight_in_the_platforms_timezone() -> None:
    exc = _reply(json={"err": "quota"})
    assert type(exc) is errors.QuotaExhausted and exc.paused_until > datetime.now(UTC)
    assert (exc.paused_until.hour, exc.paused_until.minute) == (16, 0)  # 00:00 Asia/Shanghai


def test_statuses_map_from_the_table_then_by_http_meaning() -> None:
    # ERROR_BODY_ON = "success": on an error status the body's code is not read
    assert type(_reply(403, json={"err": 7})) is errors.NeedsReauth
    assert _reply(403).code == 403
    limited = _reply(429, headers={"Retry-After": "30"})
    assert type(limited) is errors.RateLimited and limited.retry_after == 30
    assert type(_reply(503)) is errors.Unavailable and type(_reply(404)) is errors.InvalidRequest
    moved = _reply(301, headers={"Location": "https://elsewhere.example/"})
    assert type(moved) is errors.InvalidRequest and moved.code == 301 and "elsewhere.example" in str(moved)


def test_where_the_envelope_is_read() -> None:
    class Anywhere(_Envelope):
        ERROR_BODY_ON = "any"

    class OnErrors(_Envelope):
        ERROR_BODY_ON = "error"

    def check(cls: type[Channel], status: int, body: dict[str, Any]) -> errors.ChannelError | None:
        with cls(AccountInfo(1, "envelope", "t", {})) as channel:
            try:
                channel._check(httpx.Response(status, json=body, request=httpx.Request("GET", "https://a.example/")))
            except errors.ChannelError as exc:
                return exc
        return None

    assert check(Anywhere, 400, {"err": 7}).code == 7 and check(Anywhere, 200, {"err": 7}).code == 7
    assert check(OnErrors, 200, {"err": 7}) is None and check(OnErrors, 400, {"err": 7}).code == 7
    # an unknown code on a 5xx reply is transient, on a 4xx one it is not
    assert type(check(OnErrors, 502, {"err": 1})) is errors.Unavailable
    assert type(check(OnErrors, 400, {"err": 1})) is errors.InvalidRequest


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("", None), ("120", 120.0), (" 7 ", 7.0), ("1.5", 1.5), ("-5", 0.0), ("soon", None), ("inf", None)],
)
def test_retry_after_in_seconds(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_retry_after_as_an_http_date() -> None:
    now = datetime(2026, 12, 1, 8, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Tue, 01 Dec 2026 08:02:00 GMT", now=now) == 120.0
    assert parse_retry_after("Tuesday, 01-Dec-26 08:00:30 GMT", now=now) == 30.0  # RFC 850, obsolete but allowed
    assert parse_retry_after("Tue Dec  1 08:01:00 2026", now=now) == 60.0  # asctime
    assert parse_retry_after("Tue, 01 Dec 2026 07:00:00 GMT", now=now) == 0.0  # already past


def test_error_codes_are_normalised() -> None:
    assert [as_error_code(v) for v in (40001, "40001", " -1 ", 7.0, "rest_forbidden", "", None)] == [
        40001,
        40001,
        -1,
        7,
        "rest_forbidden",
        None,
        None,
    ]
