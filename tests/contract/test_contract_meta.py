"""Guards on the channel registry: every adapter has a contract table that covers its whole error mapping,
and every adapter honours the base class's client ownership."""

from __future__ import annotations

import importlib
from collections.abc import Mapping

import pytest

from channels.base import AccountInfo, Channel, channel_kinds, get_channel_class, make_client
from channels.errors import ChannelError
from channels.tokens import MemoryTokenCache
from tests.support.contract import ContractCase

KINDS = channel_kinds()


def _cases(kind: str) -> list[ContractCase]:
    try:
        module = importlib.import_module(f"tests.contract.test_contract_{kind}")
    except ModuleNotFoundError as exc:
        if exc.name != f"tests.contract.test_contract_{kind}":
            raise
        pytest.fail(f"channel kind {kind!r} is registered but tests/contract/test_contract_{kind}.py does not exist")
    cases = getattr(module, "CASES", None)
    assert isinstance(cases, list) and cases, f"tests/contract/test_contract_{kind}.py has no CASES table"
    assert all(isinstance(c, ContractCase) for c in cases), "CASES must hold ContractCase rows"
    return cases


def test_website_is_registered() -> None:
    assert "website" in KINDS


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_has_a_contract_table(kind: str) -> None:
    cases = _cases(kind)
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), f"duplicate case names in {kind}: pytest ids would collide"


@pytest.mark.parametrize("kind", KINDS)
def test_every_mapped_error_code_has_a_case(kind: str) -> None:
    """Both tables the base class maps replies from: platform codes (ERROR_MAP) and HTTP statuses (STATUS_MAP)."""
    cls: type[Channel] = get_channel_class(kind)
    error_map, status_map = cls.ERROR_MAP, cls.STATUS_MAP
    assert isinstance(error_map, Mapping) and error_map, f"{cls.__name__} needs an explicit ERROR_MAP"
    for code, exc_class in error_map.items():
        assert isinstance(code, int | str), f"{cls.__name__}.ERROR_MAP key {code!r} is not an int or str"
        assert isinstance(exc_class, type) and issubclass(exc_class, ChannelError), (code, exc_class)
    for status, exc_class in status_map.items():
        assert isinstance(status, int) and 400 <= status <= 599, f"{cls.__name__}.STATUS_MAP key {status!r}"
        assert isinstance(exc_class, type) and issubclass(exc_class, ChannelError), (status, exc_class)
    assert cls.ERROR_BODY_ON in ("success", "error", "any"), cls.ERROR_BODY_ON
    covered = {c.code for c in _cases(kind) if c.code is not None}
    missing = [code for code in [*error_map, *status_map] if code not in covered]
    assert not missing, f"{kind}: error codes without a contract case: {missing}"


def _account(kind: str) -> AccountInfo:
    # enough for every adapter's constructor; no request is made
    return AccountInfo(id=1, kind=kind, name="t", credentials={"appid": "wx1", "secret": "s"}, config={})


@pytest.mark.parametrize("kind", KINDS)
def test_a_channel_closes_the_client_it_made(kind: str) -> None:
    with get_channel_class(kind)(_account(kind), token_cache=MemoryTokenCache()) as channel:
        client = channel.client
        assert not client.is_closed
    assert client.is_closed


@pytest.mark.parametrize("kind", KINDS)
def test_a_channel_leaves_an_injected_client_to_its_owner(kind: str) -> None:
    with make_client() as client:
        with get_channel_class(kind)(_account(kind), client, token_cache=MemoryTokenCache()) as channel:
            assert channel.client is client
        assert not client.is_closed  # the caller may still use it (for other channels, say)
        channel.close()  # closing twice, or explicitly, does not touch it either
        assert not client.is_closed
    assert client.is_closed
