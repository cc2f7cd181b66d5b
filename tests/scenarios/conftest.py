"""The running system of the scenario tests: sandboxes on a socket, a Celery worker and beat as processes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.stack import Stack, require_services


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One running stack shared by a module's tests.

    The backend is ``embedded`` (SQLite + the SQLite broker) unless the module parametrizes ``stack``
    indirectly (``pytest.mark.parametrize("stack", ["embedded", "services"], indirect=True, scope="module")``);
    ``services`` (PostgreSQL + Redis) is skipped when they are unreachable, or fails under
    ``MATRIX_TEST_REQUIRE_SERVICES=1``. A module may set ``WORKER_CONCURRENCY`` (default 2).
    """
    backend = getattr(request, "param", "embedded")
    if backend == "services":
        require_services()
    concurrency = getattr(request.module, "WORKER_CONCURRENCY", 2)
    running = Stack(backend, tmp_path_factory.mktemp(f"stack-{backend}"), concurrency=concurrency).start()
    yield running
    running.stop()
