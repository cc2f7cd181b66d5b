"""Fixtures of the unit tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.stack import migrated_pg_installation


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def backend(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An installation on each database (PostgreSQL skipped when unreachable, unless CI requires it)."""
    if request.param == "sqlite":
        request.getfixturevalue("env")
        yield "sqlite"
        return
    monkeypatch.setenv("MATRIX_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("MATRIX_SECRET_KEY", "test-" + "k" * 40)
    for name in ("MATRIX_OLD_SECRET_KEYS", "MATRIX_BROKER_URL"):
        monkeypatch.delenv(name, raising=False)
    with migrated_pg_installation(monkeypatch):
        yield "postgresql"
