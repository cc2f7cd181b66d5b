"""The contract-test harness: one table of :class:`ContractCase` per adapter, run by :func:`run_case`.

A case configures the platform (through a sandbox's ``/_sandbox/`` control API, or by replaying a
recorded platform reply through ``httpx.MockTransport``), calls one adapter operation and checks the
outcome: an exception class (and its ``code``) or a predicate over the result. Adapters talk to a real
uvicorn server over real sockets (the ``sandbox_server`` fixture of ``tests/conftest.py``), so transport
failures are real ones.

Typical table module (``tests/contract/test_contract_<kind>.py``)::

    CASES = [ContractCase("publish ok", setup=None, call=lambda ch, sb: ch.publish(make_ctx()),
                          expect=lambda res, sb: res.state == "published"), ...]

    @pytest.mark.parametrize("case", CASES, ids=str)
    def test_contract(case, wp_sandbox): run_case(factory, case, wp_sandbox)
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from channels.base import Channel, DeliveryContext, PostContent
from channels.errors import ChannelError

Setup = Callable[["SandboxControl | None"], None]
Call = Callable[[Channel, "SandboxControl | None"], Any]
Predicate = Callable[[Any, "SandboxControl | None"], Any]
AdapterFactory = Callable[[httpx.BaseTransport | None], Channel]


@dataclass(frozen=True)
class ContractCase:
    """One row of an adapter's contract table.

    ``expect`` is an exception class (the call must raise it; ``code``, when set, must equal the
    exception's ``code``) or a predicate ``(result, sandbox) -> truthy``. ``transport``, when set, is an
    ``httpx.MockTransport`` handler replaying a recorded platform reply instead of the sandbox.
    ``code`` also declares which platform error code the case covers (read by the meta-test).
    """

    name: str
    setup: Setup | None
    call: Call
    expect: type[ChannelError] | Predicate
    code: int | str | None = None
    transport: Callable[[httpx.Request], httpx.Response] | None = None

    def __str__(self) -> str:  # pytest ids
        return self.name


class SandboxControl:
    """A client of one sandbox's control API, ``<root><prefix>/_sandbox/…``."""

    def __init__(self, root_url: str, prefix: str) -> None:
        self.url = root_url.rstrip("/") + prefix
        self.http = httpx.Client(base_url=self.url + "/_sandbox", timeout=10.0)

    def _json(self, response: httpx.Response) -> Any:
        response.raise_for_status()
        return response.json()

    def reset(self) -> None:
        """Clear the sandbox's posts, faults and clock (demo accounts stay registered)."""
        self._json(self.http.post("/reset"))

    def faults(self, **knobs: Any) -> dict[str, Any]:
        """Set fault knobs: ``faults(path="posts", status=503, times=2)``, ``faults(latency_ms=50)``."""
        return self._json(self.http.post("/faults", json=knobs))

    def advance(self, seconds: float) -> dict[str, Any]:
        """Move the sandbox's fake clock forward."""
        return self._json(self.http.post("/clock/advance", json={"seconds": seconds}))

    def state(self) -> dict[str, Any]:
        """The sandbox's state (posts, call counts …)."""
        return self._json(self.http.get("/state"))

    def add_account(self, **account: Any) -> dict[str, Any]:
        """Register an account with its credentials (shape is per platform)."""
        return self._json(self.http.post("/accounts", json=account))

    def close(self) -> None:
        self.http.close()


def run_case(adapter_factory: AdapterFactory, case: ContractCase, sandbox: SandboxControl | None = None) -> Any:
    """Run one case: reset the sandbox, apply ``setup``, build the adapter, call, check ``expect``.

    Returns the call's result (or the raised exception) so a test may check more.
    """
    if sandbox is not None:
        sandbox.reset()
    if case.setup is not None:
        case.setup(sandbox)
    adapter = adapter_factory(httpx.MockTransport(case.transport) if case.transport else None)
    try:
        if isinstance(case.expect, type) and issubclass(case.expect, BaseException):
            with pytest.raises(case.expect) as info:
                case.call(adapter, sandbox)
            if case.code is not None:
                assert info.value.code == case.code, f"{case.name}: code {info.value.code!r} != {case.code!r}"
            return info.value
        result = case.call(adapter, sandbox)
        verdict = case.expect(result, sandbox)
        # a predicate must say yes explicitly: one that forgets to return would otherwise always pass
        assert verdict, f"{case.name}: expectation not met by {result!r}"
        return result
    finally:
        adapter.close()
        # A channel closes only a client it made; one the factory passed in is the harness's to close.
        adapter.client.close()


# ---------------------------------------------------------------------------------------- helpers

_ids = itertools.count(1)
DEFAULT_CONTENT = PostContent(title="测试标题 Test", body="# 你好\n\n正文 **body**.", summary="摘要")


def make_ctx(content: PostContent | None = None, delivery_id: int | None = None, **kwargs: Any) -> DeliveryContext:
    """A fresh delivery context with a unique id and key ``mm-<id>`` (as the publisher makes them)."""
    did = delivery_id if delivery_id is not None else next(_ids)
    return DeliveryContext(
        delivery_id=did,
        idempotency_key=f"mm-{did}",
        content=content or PostContent(title="测试标题 Test", body="# 你好\n\n正文 **body**.", summary="摘要"),
        **kwargs,
    )


class NoWait:
    """The adapters' limiter, without the waiting (the service injects the real one)."""

    def acquire(self, key: str, per_second: float, burst: int = 1) -> None:
        return None
