"""Alert channels' wire formats, limits, signatures and answers: pure code, no IO (the sending is in
:mod:`monitor.alerting`).

One small class per kind, registered by name (:data:`KINDS`); each says, as class attributes, what its platform
allows — bytes per message, messages per minute — and, as a table, what its error codes mean:

==========  ===========================  ==========================  =========================================
kind        payload                      limit per message           signature
==========  ===========================  ==========================  =========================================
wecom       ``markdown.content``         4,096 bytes of content      none (the key in the webhook URL)
dingtalk    ``markdown.title/text``      20,000 bytes of content     ``timestamp`` (ms) and ``sign`` in the query
feishu      ``msg_type=text``            20 KB of request body       ``timestamp`` (s) and ``sign`` in the body
email       a text/plain message         (not split)                 SMTP authentication
==========  ===========================  ==========================  =========================================

WeCom and DingTalk allow 20 messages per minute per robot, Feishu 100 per minute and 5 per second; the rate
is held by the kernel's shared limiter (:mod:`core.ratelimit`), keyed by the channel, so it holds over every
worker. A message longer than its limit is **split** into parts at line boundaries (a line longer than a part
at a sentence mark, else between two characters), each part numbered ``[i/n]``; nothing is cut, and the parts
joined give the message back.

Answers are judged once (:meth:`RobotKind.judge`): ``ok``; ``retry`` (rate limited, busy: try again later);
``config`` (the webhook, signature, keyword or IP is refused: the channel needs fixing, its owner is told);
``refused`` (this message is refused: it fails alone).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote_plus

KINDS: dict[str, type[RobotKind]] = {}

OK, RETRY, CONFIG, REFUSED = "ok", "retry", "config", "refused"
PART_HEADER_RESERVE = 16  # bytes kept free in every part for "[12/34] " (and its JSON escaping)
_BREAK_AFTER = "。！？；!?;，,、 "  # where a line too long for one part is best broken (else between characters)


def register(cls: type[RobotKind]) -> type[RobotKind]:
    """Class decorator: make a kind known by its ``kind`` name."""
    KINDS[cls.kind] = cls
    return cls


@dataclass(frozen=True)
class Answer:
    """What a platform's answer means: ``outcome`` is ok | retry | config | refused."""

    outcome: str
    code: int | str = 0
    message: str = ""
    retry_after: float | None = None


def utf8_len(text: str) -> int:
    """Bytes of ``text`` in UTF-8."""
    return len(text.encode())


def json_len(text: str) -> int:
    """Bytes ``text`` takes inside a JSON string (UTF-8, escapes counted): additive over concatenation."""
    return len(json.dumps(text, ensure_ascii=False).encode()) - 2


def split_text(text: str, budget: int, cost: Callable[[str], int] = utf8_len) -> list[str]:
    """``text`` in parts of at most ``budget`` (measured by ``cost``, which must add up over concatenation).

    Breaks between lines; a line longer than a part after its last sentence mark in the part's final quarter,
    else between two characters. ``"".join(parts) == text`` always: nothing is dropped or changed.
    """
    if budget <= 0:
        raise ValueError("budget must be positive")
    parts: list[str] = []
    cur: list[str] = []
    cur_cost = 0
    for line in text.splitlines(keepends=True):
        c = cost(line)
        if cur_cost + c <= budget:
            cur.append(line)
            cur_cost += c
            continue
        if cur:
            parts.append("".join(cur))
        if c <= budget:
            cur, cur_cost = [line], c
            continue
        pieces = _split_line(line, budget, cost)
        parts.extend(pieces[:-1])
        cur, cur_cost = [pieces[-1]], cost(pieces[-1])  # the line's tail may share its part with what follows
    if cur:
        parts.append("".join(cur))
    return parts or [""]


def _split_line(line: str, budget: int, cost: Callable[[str], int]) -> list[str]:
    """One line longer than a part, in pieces of at most ``budget``."""
    pieces: list[str] = []
    piece: list[str] = []
    piece_cost = 0
    for ch in line:
        c = cost(ch)
        if piece_cost + c > budget and piece:
            # prefer a break after a sentence mark in the last quarter of the piece
            floor = len(piece) * 3 // 4
            cut = next((i + 1 for i in range(len(piece) - 1, floor - 1, -1) if piece[i] in _BREAK_AFTER), len(piece))
            pieces.append("".join(piece[:cut]))
            piece = piece[cut:]
            piece_cost = sum(cost(x) for x in piece)
        piece.append(ch)
        piece_cost += c
    pieces.append("".join(piece))
    return pieces


def number_parts(parts: list[str], prefix: str = "") -> list[str]:
    """``[i/n] `` before each part when there are several; ``prefix`` (a robot's keyword) before all."""
    if len(parts) == 1:
        return [f"{prefix}{parts[0]}"]
    return [f"{prefix}[{i}/{len(parts)}] {p}" for i, p in enumerate(parts, 1)]


def strip_part_header(part: str, prefix: str = "") -> str:
    """The part's text without ``prefix`` and its ``[i/n] `` header (tests put the message back together)."""
    return re.sub(rf"^{re.escape(prefix)}\[\d+/\d+\] ", "", part, count=1)


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk's custom-robot signature: HMAC-SHA256 keyed by the secret over ``timestamp\\nsecret``, base64."""
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def feishu_sign(secret: str, timestamp_s: int) -> str:
    """Feishu's custom-bot signature: HMAC-SHA256 keyed by ``timestamp\\nsecret`` over an empty message, base64."""
    digest = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


@dataclass(frozen=True)
class Request:
    """One HTTP request to a robot: the URL (with any signed query) and the JSON body."""

    url: str
    body: dict[str, Any]


class RobotKind:
    """One alert channel kind; subclasses set the attributes and the error table, and build the body."""

    kind: ClassVar[str] = ""
    label: ClassVar[str] = ""
    rate_per_minute: ClassVar[int] = 20
    max_bytes: ClassVar[int] = 0  # 0: not split
    uses_secret: ClassVar[bool] = False  # a signing secret besides the webhook
    uses_keyword: ClassVar[bool] = False
    webhook_hosts: ClassVar[tuple[str, ...]] = ()  # the platform's own hosts (documentation, the CLI's hint)
    # error code -> (outcome, what it means); codes not listed are "refused" (this message) unless HTTP says more
    errors: ClassVar[dict[int, tuple[str, str]]] = {}
    code_field: ClassVar[str] = "errcode"
    message_field: ClassVar[str] = "errmsg"
    retry_after_s: ClassVar[float] = 60.0  # when rate-limited: how long the platform throttles

    @classmethod
    def cost(cls, text: str) -> int:
        """What one part's content costs against :attr:`max_bytes`."""
        return utf8_len(text)

    @classmethod
    def budget(cls, prefix: str = "") -> int:
        """Bytes left for a part's own text (the limit less the keyword, the part header and the envelope)."""
        return cls.max_bytes - cls.cost(prefix) - PART_HEADER_RESERVE

    @classmethod
    def parts(cls, text: str, keyword: str = "") -> list[str]:
        """The message as the parts to send, in order (numbered when there are several).

        A robot with a keyword refuses a message without it: every part of a split message carries it, and a
        single message that lacks it gets it in front.
        """
        prefix = f"{keyword} " if keyword else ""
        if cls.max_bytes <= 0:
            return [text if not keyword or keyword in text else f"{prefix}{text}"]
        parts = split_text(text, cls.budget(prefix), cls.cost)
        if len(parts) == 1 and (not keyword or keyword in text):
            return parts
        return number_parts(parts, prefix)

    @classmethod
    def build(cls, webhook: str, part: str, *, title: str, secret: str = "", now_s: float = 0.0) -> Request:
        """The request that sends ``part``."""
        raise NotImplementedError

    @classmethod
    def judge(cls, status: int, body: Any) -> Answer:
        """Map an answer (HTTP status and parsed JSON body) to an :class:`Answer` — the one place that does."""
        code = body.get(cls.code_field) if isinstance(body, dict) else None
        message = str(body.get(cls.message_field, "")) if isinstance(body, dict) else ""
        if status == 429 or status >= 500:
            return Answer(RETRY, status, f"HTTP {status}", retry_after=None)
        if code == 0 and 200 <= status < 300:
            return Answer(OK)
        if isinstance(code, int) and code in cls.errors:
            outcome, meaning = cls.errors[code]
            wait = cls.retry_after_s if outcome == RETRY else None
            return Answer(outcome, code, f"{meaning} ({code}: {message[:200]})", retry_after=wait)
        if status in (401, 403, 404):
            return Answer(CONFIG, status, f"HTTP {status}: the webhook is not accepted")
        if code is None:
            return Answer(REFUSED, status, f"HTTP {status} without an answer code")
        return Answer(REFUSED, code, f"refused ({code}: {message[:200]})")


@register
class WeCom(RobotKind):
    """企业微信群机器人: ``POST …/cgi-bin/webhook/send?key=KEY``, markdown up to 4,096 bytes, 20 a minute."""

    kind = "wecom"
    label = "企业微信群机器人"
    max_bytes = 4096
    webhook_hosts = ("qyapi.weixin.qq.com",)
    errors = {
        45009: (RETRY, "rate limited: over 20 messages a minute"),
        -1: (RETRY, "WeCom is busy"),
        93000: (CONFIG, "invalid webhook URL (the robot was removed, or the key is wrong)"),
        93004: (CONFIG, "the robot is disabled"),
        93008: (CONFIG, "the robot is not in the group"),
        40058: (REFUSED, "the message is longer than WeCom allows"),
        40008: (REFUSED, "invalid message type"),
    }

    @classmethod
    def build(cls, webhook: str, part: str, *, title: str, secret: str = "", now_s: float = 0.0) -> Request:
        return Request(webhook, {"msgtype": "markdown", "markdown": {"content": part}})


@register
class DingTalk(RobotKind):
    """钉钉自定义机器人: ``POST …/robot/send?access_token=T&timestamp=&sign=``, markdown, 20 a minute."""

    kind = "dingtalk"
    label = "钉钉自定义机器人"
    max_bytes = 20_000
    uses_secret = True
    uses_keyword = True
    webhook_hosts = ("oapi.dingtalk.com",)
    retry_after_s = 600.0  # DingTalk throttles a robot for 10 minutes once it is over its 20 a minute
    errors = {
        130101: (RETRY, "rate limited: over 20 messages a minute (throttled for 10 minutes)"),
        -1: (RETRY, "DingTalk is busy"),
        310000: (CONFIG, "refused by the robot's security settings (signature, keyword or IP allow-list)"),
        300001: (CONFIG, "the access token does not exist (the robot was removed?)"),
        400102: (CONFIG, "the robot is stopped"),
        400101: (CONFIG, "the access token does not exist"),
        460101: (REFUSED, "the message is longer than DingTalk allows"),
    }

    @classmethod
    def build(cls, webhook: str, part: str, *, title: str, secret: str = "", now_s: float = 0.0) -> Request:
        url = webhook
        if secret:
            ts = int(now_s * 1000)
            sep = "&" if "?" in url else "?"
            # quote_plus as DingTalk's own sample: "+" in base64 must not reach the server as a space
            url = f"{url}{sep}timestamp={ts}&sign={quote_plus(dingtalk_sign(secret, ts))}"
        return Request(url, {"msgtype": "markdown", "markdown": {"title": title[:64] or "舆情预警", "text": part}})


@register
class Feishu(RobotKind):
    """飞书自定义机器人: ``POST …/open-apis/bot/v2/hook/TOKEN``, text, body up to 20 KB, 100 a minute, 5 a second."""

    kind = "feishu"
    label = "飞书自定义机器人"
    rate_per_minute = 100
    max_bytes = 20 * 1024
    uses_secret = True
    uses_keyword = True
    webhook_hosts = ("open.feishu.cn", "open.larksuite.com")
    code_field = "code"
    message_field = "msg"
    retry_after_s = 60.0
    errors = {
        11232: (RETRY, "rate limited"),
        19021: (CONFIG, "signature refused (wrong secret, or the clock is over an hour off)"),
        19022: (CONFIG, "this server's IP is not on the robot's allow-list"),
        19024: (CONFIG, "the message lacks the robot's keyword"),
        19001: (CONFIG, "invalid webhook (the robot was removed, or the token is wrong)"),
        9499: (REFUSED, "bad request (the body is malformed or over 20 KB)"),
    }
    _ENVELOPE = 160  # bytes of the body around the text: msg_type, content, timestamp and a 44-character sign

    @classmethod
    def cost(cls, text: str) -> int:
        return json_len(text)  # the limit is on the request body: escapes count

    @classmethod
    def budget(cls, prefix: str = "") -> int:
        return super().budget(prefix) - cls._ENVELOPE

    @classmethod
    def build(cls, webhook: str, part: str, *, title: str, secret: str = "", now_s: float = 0.0) -> Request:
        body: dict[str, Any] = {"msg_type": "text", "content": {"text": part}}
        if secret:
            ts = int(now_s)
            body = {"timestamp": str(ts), "sign": feishu_sign(secret, ts), **body}
        return Request(webhook, body)


@register
class Email(RobotKind):
    """E-mail through SMTP (stdlib ``smtplib``): one text/plain message, not split; the server's limits apply."""

    kind = "email"
    label = "e-mail (SMTP)"
    rate_per_minute = 0  # no platform rate; the SMTP server queues

    @classmethod
    def build(cls, webhook: str, part: str, *, title: str, secret: str = "", now_s: float = 0.0) -> Request:
        raise NotImplementedError("e-mail is sent by SMTP, not HTTP")


def kind_of(name: str) -> type[RobotKind]:
    """The class of a channel kind; ``KeyError`` for an unknown one (callers check names first)."""
    return KINDS[name]
