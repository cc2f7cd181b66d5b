"""Structured logs: one JSON object per line (``MATRIX_LOG_FORMAT=json``) carrying the ids of what is being done.

Why: with many workers of many threads, a text line such as "delivery 812: not sent" is one of thousands a
minute; a log pipeline (Loki, Elasticsearch, ``jq``) needs fields to select on. Each line is::

    {"ts": "2026-12-02T18:40:01.123Z", "level": "WARNING", "logger": "publisher.delivery.deliver",
     "message": "...", "worker": "host:4711", "task_id": "…", "task_name": "matrix.deliver",
     "delivery_id": 812, "post_id": 97}

The ids come from a context variable that :func:`bind` sets for a block of code (``with bind(post_id=…):``),
so every line logged inside it, by our code or a library's, carries them; each thread (and asyncio task) has
its own, so the threads of a delivery worker never mix theirs. The workers bind the task's ids around every
task (``workers.app``). A field given with ``extra=`` on one call is added too.

Secrets stay out: :mod:`core.logredact` redacts every record when it is made, and this formatter redacts the
finished message and exception text once more, so a formatter of its own never undoes it.

Why a small stdlib formatter, not ``python-json-logger``: that package is not installed here, and what is needed
(a fixed set of fields, the bound ids, redaction) is a dozen lines of :mod:`json`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from core import logredact

ID_FIELDS = ("task_id", "task_name", "delivery_id", "post_id", "version_id", "account_id")
"""The fields a line carries when they are bound (or given with ``extra=``), in this order."""

_bound: ContextVar[dict[str, Any] | None] = ContextVar("matrix_log_ids", default=None)
_HOST = socket.gethostname()


def current() -> dict[str, Any]:
    """The ids bound in this context (a copy)."""
    return dict(_bound.get() or {})


@contextlib.contextmanager
def bind(**ids: Any) -> Iterator[None]:
    """Add ``ids`` to every log line made inside the block (nested blocks add to the outer ones).

    ``None`` values are left out, so a caller may pass what it knows.
    """
    token = _bound.set({**current(), **{k: v for k, v in ids.items() if v is not None}})
    try:
        yield
    finally:
        _bound.reset(token)


def bind_until_reset(**ids: Any) -> object:
    """Like :func:`bind` for code that cannot wrap a block (a signal before and one after a task): returns the
    token to give to :func:`reset`."""
    return _bound.set({**current(), **{k: v for k, v in ids.items() if v is not None}})


def reset(token: object) -> None:
    """Undo one :func:`bind_until_reset`."""
    try:
        _bound.reset(token)  # type: ignore[arg-type]
    except ValueError:  # made in another context (a task id seen twice at once): forget this context's ids
        _bound.set(None)


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON: ts, level, logger, message, worker, the bound ids, exc."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one JSON object (no newline inside: exceptions are escaped in a string)."""
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": logredact.redact(record.getMessage()),
            "worker": f"{_HOST}:{os.getpid()}",  # read each time: a prefork child is not its parent
        }
        ids = current()
        for field in ID_FIELDS:
            value = getattr(record, field, None)
            if value is None:
                value = ids.get(field)
            if value is not None:
                line[field] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exc"] = logredact.redact(record.exc_text)
        if record.stack_info:
            line["stack"] = logredact.redact(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def use_json(loggers: Iterable[logging.Logger] = ()) -> None:
    """Give every handler of ``loggers`` (default: the root logger) the JSON formatter."""
    for logger in list(loggers) or [logging.getLogger()]:
        for handler in logger.handlers:
            handler.setFormatter(JsonFormatter())
