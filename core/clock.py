"""Times: stored in UTC, shown and parsed in the configured zone (default Asia/Shanghai)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from core.errors import InvalidInput
from core.settings import get_settings

_FORMATS = ("%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d")


def now() -> datetime:
    """Aware UTC now, shifted by ``MATRIX_CLOCK_OFFSET_S`` (0 except in drills on a sandbox's fake clock)."""
    offset = get_settings().clock_offset_s
    return datetime.now(UTC) + timedelta(seconds=offset) if offset else datetime.now(UTC)


def parse_local(text: str, *, allow_past: bool = False, grace_s: float = 60.0) -> datetime:
    """Parse a time the user typed: local (``MATRIX_TIMEZONE``) unless it carries an offset; "now" works.

    Returns aware UTC. Raises :class:`InvalidInput` with a one-line reason.
    """
    text = (text or "").strip()
    if not text:
        raise InvalidInput("no time given")
    if text.lower() == "now":
        return now()
    value: datetime | None = None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        for fmt in _FORMATS:
            try:
                value = datetime.strptime(text, fmt)
                break
            except ValueError:
                continue
    if value is None:
        raise InvalidInput(f"cannot read time {text!r}; use e.g. '2026-12-01 09:00' or 'now'")
    if value.tzinfo is None:
        value = value.replace(tzinfo=get_settings().tz)
    value = value.astimezone(UTC)
    if not allow_past and value < now() - timedelta(seconds=grace_s):
        raise InvalidInput(f"time {format_local(value)} is in the past")
    return value


def format_local(value: datetime | None) -> str:
    """Show an aware time in the configured zone, e.g. ``2026-12-01 09:00:00 CST``."""
    if value is None:
        return "-"
    return value.astimezone(get_settings().tz).strftime("%Y-%m-%d %H:%M:%S %Z")


def iso_local(value: datetime | None) -> str | None:
    """ISO 8601 in the configured zone with its offset (``2026-12-01T09:00:00+08:00``), for API answers.

    The instant is the same as the stored UTC value; people reading the answer see their own clock.
    """
    return value.astimezone(get_settings().tz).isoformat() if value is not None else None


def local_date(value: datetime) -> date:
    """The calendar day of an aware time in the configured zone (what a person calls "that day")."""
    return value.astimezone(get_settings().tz).date()
