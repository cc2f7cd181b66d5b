"""Guards on the channel registry: every adapter has a contract table that covers its whole error map."""

from __future__ import annotations

import importlib

import pytest

from channels.base import Channel, channel_kinds, get_channel_class
from channels.errors import ChannelError
from tests.contract import ContractCase

KINDS = channel_kinds()


def _cases(kind: str) -> list[ContractCase]:
    try:
        module = importlib.import_module(f"tests.test_contract_{kind}")
    except ModuleNotFoundError as exc:
        if exc.name != f"tests.test_contract_{kind}":
            raise
        pytest.fail(f"channel kind {kind!r} is registered but tests/test_contract_{kind}.py does not exist")
    cases = getattr(module, "CASES", None)
    assert isinstance(cases, list) and cases, f"tests/test_contract_{kind}.py has no CASES table"
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
    cls: type[Channel] = get_channel_class(kind)
    error_map = getattr(cls, "ERROR_MAP", None)
    assert isinstance(error_map, dict) and error_map, f"{cls.__name__} needs an explicit ERROR_MAP"
    for code, exc_class in error_map.items():
        assert isinstance(code, int | str), f"{cls.__name__}.ERROR_MAP key {code!r} is not an int or str"
        assert isinstance(exc_class, type) and issubclass(exc_class, ChannelError), (code, exc_class)
    covered = {c.code for c in _cases(kind) if c.code is not None}
    missing = [code for code in error_map if code not in covered]
    assert not missing, f"{kind}: error codes without a contract case: {missing}"
