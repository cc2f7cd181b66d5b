"""Credentials out of every log line: one :func:`install` per process redacts every log record, whoever logs it.

Why: the libraries log what they send. httpx logs every request's full URL at INFO, and WeChat takes its
``access_token`` (and ``stable_token`` its ``secret``) in the query string, Weibo its long-lived
``access_token``; a traceback or an exception's repr can carry a request's headers or form. A filter on our
own loggers would miss all of that, and a filter on handlers misses the handlers Celery and uvicorn install
later. So :func:`install` wraps the process's *log record factory* (``logging.setLogRecordFactory``): every
record of every logger passes through it once, when it is made, before any handler or formatter sees it.

What is redacted (:func:`redact`), each value replaced by ``***``:

- ``key=value`` (query strings, form bodies, cookie pairs, keyword reprs) and ``"key": "value"`` /
  ``'key': 'value'`` (JSON, dict reprs) for the keys in :data:`SENSITIVE_KEYS`;
- the values of ``Authorization``, ``Proxy-Authorization``, ``Cookie`` and ``Set-Cookie`` header lines, and
  ``Bearer <token>`` anywhere;
- the password in a URL's user info (``scheme://user:***@host``);
- a Feishu / Lark robot's token in its webhook path (``/open-apis/bot/v2/hook/***``).

Keys match whole (``access_token``, not ``my_access_tokens``) and only when followed by ``=`` or a quoted
``:``, so ordinary words such as "token" or "secret" in a sentence are left alone. A record whose message
needs redacting keeps its arguments where it can (each argument redacted on its own: uvicorn's access
formatter unpacks them), else becomes one pre-formatted message. Exception and stack text is redacted too.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

MASK = "***"

SENSITIVE_KEYS = (
    "access_token",
    "refresh_token",
    "token",
    "appsecret",
    "secret",
    "client_secret",
    "app_password",
    "password",
    "passwd",
    "sessionid",
    "sessionid_ss",
    "authorization",
    "cookie",
    "set-cookie",
    "mm_session",
    "csrf_token",
    "key",  # the WeCom group robot's webhook key (?key=…)
)
"""Keys whose values never reach a log (compared case-insensitively, as whole keys)."""

_KEYS = "|".join(re.escape(k) for k in sorted(SENSITIVE_KEYS, key=len, reverse=True))
# A key must not be the tail of a longer name ("csrf_token" is not "token"), hence the look-behind.
_KEY_START = r"(?<![\w-])"

# "key": "value" / 'key': 'value' (JSON, Python reprs); the value ends at its own unescaped quote.
_QUOTED = re.compile(rf"""(?i)(["'])({_KEYS})\1(\s*:\s*)(["'])(?:\\.|(?!\4).)*\4""")
# Header lines: "Authorization: Basic …", "Cookie: a=b; c=d" up to the end of the line.
_HEADER = re.compile(
    rf"(?i){_KEY_START}(authorization|proxy-authorization|cookie|set-cookie)(\s*:[ \t]*)(?=\S)[^\r\n]*"
)
# key=value in a query, a form, a cookie or a repr; a quoted value is taken whole.
_PAIR = re.compile(rf"""(?i){_KEY_START}({_KEYS})=("[^"]*"|'[^']*'|[^&\s;,"'<>)\]}}]+)""")
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{6,}")
_URL_PASSWORD = re.compile(r"(://[^/\s:@]+:)[^@\s/]+@")
# Feishu / Lark custom-bot webhooks carry their token in the path (/open-apis/bot/v2/hook/<token>).
_HOOK_PATH = re.compile(r"(/bot/v2/hook/)[A-Za-z0-9_-]+")
# Our own API tokens and session secrets ("mm_" + 43 URL-safe characters), wherever they appear.
_OWN_TOKEN = re.compile(r"\bmm_[A-Za-z0-9_-]{40,}")


def redact(text: str) -> str:
    """``text`` with the value of every credential-looking field replaced by ``***`` (see the module docstring)."""
    text = _QUOTED.sub(lambda m: f"{m[1]}{m[2]}{m[1]}{m[3]}{m[4]}{MASK}{m[4]}", text)
    text = _HEADER.sub(lambda m: f"{m[1]}{m[2]}{MASK}", text)
    text = _PAIR.sub(lambda m: f"{m[1]}={MASK}", text)
    text = _BEARER.sub(lambda m: f"{m[1]} {MASK}", text)
    text = _OWN_TOKEN.sub(f"mm_{MASK}", text)
    text = _HOOK_PATH.sub(lambda m: f"{m[1]}{MASK}", text)
    return _URL_PASSWORD.sub(lambda m: f"{m[1]}{MASK}@", text)


def _redacted_arg(value: Any) -> Any:
    # Arguments with nothing to hide keep their type (a %d still gets its int).
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    text = str(value)
    clean = redact(text)
    return value if clean == text else clean


def _redact_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:
        return  # a broken format string: logging reports it when a handler formats the record
    if redact(message) != message:
        _redact_message(record, message)
    if record.exc_info and not record.exc_text:
        text = logging.Formatter().formatException(record.exc_info)
        if redact(text) != text:
            record.exc_text = redact(text)  # formatters use exc_text when it is set
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


def _redact_message(record: logging.LogRecord, message: str) -> None:
    if isinstance(record.args, Mapping):
        record.args = {k: _redacted_arg(v) for k, v in record.args.items()}
    elif isinstance(record.args, tuple):
        record.args = tuple(_redacted_arg(a) for a in record.args)
    if isinstance(record.msg, str):
        record.msg = redact(record.msg)
    try:
        candidate: str | None = record.getMessage()
    except Exception:
        candidate = None  # redacting the format string broke it ("token=%s" became "token=***")
    if candidate is None or redact(candidate) != candidate:
        # A secret split between the format and its arguments is only visible whole: keep the message only.
        record.msg, record.args = redact(message), ()


def install() -> None:
    """Redact every log record this process makes from now on (idempotent; call once at start-up)."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "_matrix_redacting", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        _redact_record(record)
        return record

    factory._matrix_redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def installed() -> bool:
    """True once :func:`install` has run in this process."""
    return bool(getattr(logging.getLogRecordFactory(), "_matrix_redacting", False))
