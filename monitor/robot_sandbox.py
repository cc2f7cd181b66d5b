"""The robot sandbox: an ASGI app speaking the WeCom, DingTalk and Feishu custom-robot webhook APIs.

Mounted at ``/robots`` by ``matrix up`` (with the platform sandboxes) and served on a port of its own by the
tests. Each API checks what the real one checks and answers with its real error codes:

=========  =================================================  ===============================================
API        path                                               checks → code
=========  =================================================  ===============================================
WeCom      ``POST /wecom/cgi-bin/webhook/send?key=K``          unknown key → 93000; content over 4,096 bytes
                                                              (markdown) / 2,048 (text) → 40058; over 20 a
                                                              minute → 45009
DingTalk   ``POST /dingtalk/robot/send?access_token=T``        unknown token → 300001; ``timestamp``/``sign``
           ``&timestamp=MS&sign=S``                           wrong or over an hour off, keyword missing →
                                                              310000; over 20,000 bytes → 460101; over 20 a
                                                              minute → 130101
Feishu     ``POST /feishu/open-apis/bot/v2/hook/T``            unknown token → 19001; body over 20 KB → 9499
                                                              (HTTP 400); sign wrong or over an hour off →
                                                              19021; keyword missing → 19024; over the
                                                              minute's limit (100, or the robot's) → 11232
=========  =================================================  ===============================================

Control API (JSON) under ``/_sandbox/``::

    POST reset                                   forget robots and messages
    POST robots    {"kind", "token", "secret"?, "keywords"?, "per_minute"?}   register a robot
    GET  messages?kind=&token=                   what each robot accepted, in order (and what it refused)
    POST faults    {"kind", "token", "code", "times"?}   answer the next requests with this error code
    POST clock     {"advance_s": n}              move the fake clock (signatures' hour, the minute windows)

The clock is ``time.time()`` plus the advance, or a callable given to :func:`create_app` (tests share one with
the limiter). It imports nothing of the monitor: a fake that shared the sender's code would agree with its bugs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

DEMO_ACCOUNTS: list[dict[str, Any]] = []  # the combined sandbox app asks every sandbox for its demo accounts

LIMITS = {"wecom": 20, "dingtalk": 20, "feishu": 100}
SIGN_WINDOW_S = 3600  # DingTalk and Feishu accept a timestamp within an hour of their clock
WECOM_MARKDOWN_BYTES, WECOM_TEXT_BYTES = 4096, 2048
DINGTALK_BYTES = 20_000
FEISHU_BODY_BYTES = 20 * 1024


@dataclass
class _Robot:
    kind: str
    token: str
    secret: str = ""
    keywords: list[str] = field(default_factory=list)
    per_minute: int = 0
    accepted: list[dict[str, Any]] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)
    recent: deque[float] = field(default_factory=deque)  # times of accepted messages in the last minute
    faults: deque[int] = field(default_factory=deque)


class _State:
    def __init__(self, clock: Callable[[], float] | None) -> None:
        self.lock = threading.Lock()
        self._clock = clock
        self.advance = 0.0
        self.robots: dict[tuple[str, str], _Robot] = {}

    def now(self) -> float:
        return (self._clock or time.time)() + self.advance


def _over_rate(robot: _Robot, now: float) -> bool:
    while robot.recent and robot.recent[0] <= now - 60:
        robot.recent.popleft()
    return len(robot.recent) >= (robot.per_minute or LIMITS[robot.kind])


def create_app(clock: Callable[[], float] | None = None) -> Starlette:
    """The robot sandbox (see the module docstring); ``clock``: epoch seconds, default the real time."""
    state = _State(clock)

    def answer(robot: _Robot | None, kind: str, code: int, msg: str, content: str, status: int = 200) -> Response:
        code_field, msg_field = ("code", "msg") if kind == "feishu" else ("errcode", "errmsg")
        if robot is not None:
            record = {"at": state.now(), "content": content, "code": code}
            if code == 0:
                robot.accepted.append(record)
                robot.recent.append(state.now())
            else:
                robot.refused.append(record)
        return JSONResponse({code_field: code, msg_field: msg}, status_code=status)

    def lookup(kind: str, token: str) -> _Robot | None:
        return state.robots.get((kind, token))

    def keyword_ok(robot: _Robot, content: str) -> bool:
        return not robot.keywords or any(k in content for k in robot.keywords)

    async def read_json(request: Request) -> tuple[bytes, Any]:
        raw = await request.body()
        try:
            return raw, json.loads(raw)
        except ValueError:
            return raw, None

    async def wecom(request: Request) -> Response:
        _raw, body = await read_json(request)
        with state.lock:
            robot = lookup("wecom", request.query_params.get("key", ""))
            if robot is None:
                return answer(None, "wecom", 93000, "invalid webhook url", "")
            if robot.faults:
                return answer(robot, "wecom", robot.faults.popleft(), "fault injected", "")
            msgtype = body.get("msgtype") if isinstance(body, dict) else None
            if msgtype not in ("text", "markdown") or not isinstance(body.get(msgtype), dict):
                return answer(robot, "wecom", 40008, "invalid message type", "")
            content = str(body[msgtype].get("content", ""))
            limit = WECOM_MARKDOWN_BYTES if msgtype == "markdown" else WECOM_TEXT_BYTES
            if len(content.encode()) > limit:
                return answer(robot, "wecom", 40058, f"{msgtype}.content exceed max length {limit}", content)
            if _over_rate(robot, state.now()):
                return answer(robot, "wecom", 45009, "api freq out of limit", content)
            return answer(robot, "wecom", 0, "ok", content)

    async def dingtalk(request: Request) -> Response:
        _raw, body = await read_json(request)
        q = request.query_params
        with state.lock:
            robot = lookup("dingtalk", q.get("access_token", ""))
            if robot is None:
                return answer(None, "dingtalk", 300001, "token is not exist", "")
            if robot.faults:
                return answer(robot, "dingtalk", robot.faults.popleft(), "fault injected", "")
            if robot.secret:
                ts = q.get("timestamp", "")
                if not ts.isdigit() or abs(int(ts) / 1000 - state.now()) > SIGN_WINDOW_S:
                    return answer(robot, "dingtalk", 310000, "invalid timestamp", "")
                mac = hmac.new(robot.secret.encode(), f"{ts}\n{robot.secret}".encode(), hashlib.sha256)
                # the query is URL-decoded by the framework: what arrives must be the base64 itself
                if not hmac.compare_digest(q.get("sign", ""), base64.b64encode(mac.digest()).decode()):
                    return answer(robot, "dingtalk", 310000, "sign not match", "")
            msgtype = body.get("msgtype") if isinstance(body, dict) else None
            if msgtype not in ("text", "markdown") or not isinstance(body.get(msgtype), dict):
                return answer(robot, "dingtalk", 40035, "缺少参数 msgtype", "")
            content = str(body[msgtype].get("content" if msgtype == "text" else "text", ""))
            if len(content.encode()) > DINGTALK_BYTES:
                return answer(robot, "dingtalk", 460101, "message too long", content)
            if not keyword_ok(robot, content):
                return answer(robot, "dingtalk", 310000, "keywords not in content", content)
            if _over_rate(robot, state.now()):
                return answer(robot, "dingtalk", 130101, "send too fast, exceed 20 times per minute", content)
            return answer(robot, "dingtalk", 0, "ok", content)

    async def feishu(request: Request) -> Response:
        raw, body = await read_json(request)
        with state.lock:
            robot = lookup("feishu", request.path_params["token"])
            if robot is None:
                return answer(None, "feishu", 19001, "param invalid: incoming webhook access token invalid", "")
            if robot.faults:
                return answer(robot, "feishu", robot.faults.popleft(), "fault injected", "")
            if len(raw) > FEISHU_BODY_BYTES or not isinstance(body, dict):
                return answer(robot, "feishu", 9499, "Bad Request", "", status=400)
            if robot.secret:
                ts = str(body.get("timestamp", ""))
                if not ts.isdigit() or abs(int(ts) - state.now()) > SIGN_WINDOW_S:
                    return answer(robot, "feishu", 19021, "sign match fail or timestamp is not within one hour", "")
                mac = hmac.new(f"{ts}\n{robot.secret}".encode(), b"", hashlib.sha256)
                if not hmac.compare_digest(str(body.get("sign", "")), base64.b64encode(mac.digest()).decode()):
                    return answer(robot, "feishu", 19021, "sign match fail or timestamp is not within one hour", "")
            content_obj = body.get("content")
            if body.get("msg_type") != "text" or not isinstance(content_obj, dict):
                return answer(robot, "feishu", 9499, "Bad Request", "", status=400)
            content = str(content_obj.get("text", ""))
            if not keyword_ok(robot, content):
                return answer(robot, "feishu", 19024, "Key Words Not Found", content)
            if _over_rate(robot, state.now()):
                return answer(robot, "feishu", 11232, "frequency limited", content)
            return answer(robot, "feishu", 0, "success", content)

    async def reset(request: Request) -> Response:
        with state.lock:
            state.robots.clear()
            state.advance = 0.0
        return JSONResponse({"ok": True})

    async def robots(request: Request) -> Response:
        body = await request.json()
        kind, token = str(body.get("kind", "")), str(body.get("token", ""))
        if kind not in LIMITS or not token:
            return JSONResponse({"error": f"kind is one of {sorted(LIMITS)}, and a token is needed"}, 400)
        with state.lock:
            state.robots[(kind, token)] = _Robot(
                kind,
                token,
                secret=str(body.get("secret", "")),
                keywords=[str(k) for k in body.get("keywords", [])],
                per_minute=int(body.get("per_minute", 0)),
            )
        return JSONResponse({"ok": True, "kind": kind, "token": token})

    async def messages(request: Request) -> Response:
        kind, token = request.query_params.get("kind", ""), request.query_params.get("token", "")
        with state.lock:
            robot = lookup(kind, token)
            if robot is None:
                return JSONResponse({"error": "no such robot"}, 404)
            return JSONResponse({"accepted": list(robot.accepted), "refused": list(robot.refused)})

    async def faults(request: Request) -> Response:
        body = await request.json()
        with state.lock:
            robot = lookup(str(body.get("kind", "")), str(body.get("token", "")))
            if robot is None:
                return JSONResponse({"error": "no such robot"}, 404)
            robot.faults.extend([int(body["code"])] * int(body.get("times", 1)))
        return JSONResponse({"ok": True})

    async def clock_endpoint(request: Request) -> Response:
        body = await request.json()
        with state.lock:
            state.advance += float(body.get("advance_s", 0))
            return JSONResponse({"now": state.now()})

    return Starlette(
        routes=[
            Route("/wecom/cgi-bin/webhook/send", wecom, methods=["POST"]),
            Route("/dingtalk/robot/send", dingtalk, methods=["POST"]),
            Route("/feishu/open-apis/bot/v2/hook/{token}", feishu, methods=["POST"]),
            Route("/_sandbox/reset", reset, methods=["POST"]),
            Route("/_sandbox/robots", robots, methods=["POST"]),
            Route("/_sandbox/messages", messages, methods=["GET"]),
            Route("/_sandbox/faults", faults, methods=["POST"]),
            Route("/_sandbox/clock", clock_endpoint, methods=["POST"]),
            Route("/_sandbox/state", messages_state(state), methods=["GET"]),
        ]
    )


def messages_state(state: _State) -> Callable[[Request], Any]:
    """``GET /_sandbox/state``: per robot, how many messages it accepted and refused (the index page links it)."""

    async def endpoint(request: Request) -> Response:
        with state.lock:
            return JSONResponse(
                {
                    "now": state.now(),
                    "robots": [
                        {"kind": r.kind, "token": r.token, "accepted": len(r.accepted), "refused": len(r.refused)}
                        for r in state.robots.values()
                    ],
                }
            )

    return endpoint
