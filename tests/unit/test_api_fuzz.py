"""A property-based fuzz of the HTTP API from its own OpenAPI schema (schemathesis).

Every operation in ``/openapi.json`` is called with generated requests, valid and invalid ones (the schema's
boundaries, then random examples), on a fresh embedded installation with a few rows in it, signed in as an
admin who is also an editor and a reviewer (so that every route is reached, not stopped at 401). The property:
no answer is a 5xx and no answer carries a stack trace. A request the API cannot use is a 4xx with a reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from core.db import session_scope
from core.settings import reset_settings
from publisher import migrate, services
from publisher.interfaces.api import app
from publisher.services import Principal
from publisher.services.screening import configure_moderation
from tests.support.people import PROVINCE, make_user

# Examples per operation in the random phase (the boundary cases come on top). About 20 operations: the whole
# test takes ~30-60 s on 2 cores; MATRIX_FUZZ_EXAMPLES raises it for a longer run by hand.
EXAMPLES = int(os.environ.get("MATRIX_FUZZ_EXAMPLES", "40"))


@pytest.fixture(scope="module")
def installation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Principal]:
    """A fresh embedded installation (SQLite database and broker in a temporary folder), rules-only screening,
    with an account and two posts in it so that generated ids find rows now and then; yields the admin (also
    editor and reviewer, of the province) the requests are signed in as. The posts are another editor's, so
    the admin may approve them."""
    with pytest.MonkeyPatch.context() as mp:
        for name in ("MATRIX_DATABASE_URL", "MATRIX_BROKER_URL", "MATRIX_SECRET_KEY", "MATRIX_OLD_SECRET_KEYS"):
            mp.delenv(name, raising=False)
        mp.setenv("MATRIX_DATA_DIR", str(tmp_path_factory.mktemp("fuzz")))
        mp.setenv("MATRIX_MODERATION_CLASSIFIER", "0")
        reset_settings()
        configure_moderation()
        migrate.upgrade()
        admin = make_user("admin", ("admin", PROVINCE), ("editor", PROVINCE), ("reviewer", PROVINCE))
        editor = make_user("editor", ("editor", PROVINCE)).principal
        with session_scope() as session:
            services.add_account(
                session,
                admin.principal,
                kind="manual",
                name="by-hand",
                credentials={},
                config={},
                organization=PROVINCE,
            )
        with session_scope() as session:
            draft = services.create_post(session, editor, title="草稿", body="正文", accounts=[1], submit=False)
            screening = services.create_post(session, editor, title="送审", body="正文", accounts=[1])
            session.flush()
            services.screen_version(session, screening.current_version_id)
            assert draft.id and screening.id
        yield admin.principal
    reset_settings()
    configure_moderation()


# The schema as the app builds it (no request, no database: safe at import), and the app to call. Not
# `schemathesis.pytest.from_fixture`: it sets a private attribute that pytest 9.2 no longer has.
schema = schemathesis.openapi.from_dict(app.openapi())
schema.app = app


def _no_platform_calls(case: schemathesis.Case) -> None:
    """Registering or re-authorising an account asks the platform first unless told not to: here it is always
    told not to (no platform runs, and a generated config could name any host). Everything else is sent as
    generated."""
    path, method = case.operation.path, case.operation.method.upper()
    if method == "POST" and path == "/accounts" and isinstance(case.body, dict):
        case.body["check"] = False
    if method == "POST" and path == "/accounts/{account_id}/reauthorize":
        case.query = {**(case.query or {}), "check": "false"}


def _signed_in(admin: Principal) -> dict[str, str]:
    """A fresh API token of the admin for each request: a generated ``POST /auth/logout`` or ``DELETE
    /auth/tokens/{token_id}`` may revoke the token it came with, and every later request would stop at 401."""
    with session_scope() as session:
        _, token, _ = services.issue_credential(session, admin, kind="token", name="fuzz")
    return {"Authorization": f"Bearer {token}"}


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # no saved failing examples replayed: each run is the same (hypothesis keeps a self-ignored cache)
    suppress_health_check=list(HealthCheck),
    derandomize=True,  # the same requests every run: a failure here is reproducible
)
def test_no_route_answers_5xx_or_a_stack_trace(installation: Principal, case: schemathesis.Case) -> None:
    _no_platform_calls(case)
    response = case.call(headers=_signed_in(installation))
    where = f"{case.operation.method.upper()} {case.operation.path}"
    assert response.status_code < 500, f"{where} answered {response.status_code}: {response.text[:300]}"
    # Signed in, only a wrong name or password is a 401: every other route was reached, not stopped at the door.
    assert response.status_code != 401 or where == "POST /auth/login", f"{where} answered 401: {response.text}"
    # on the bytes: a route may answer binary (GET /monitor/report.pdf), which does not decode as text
    assert b"Traceback" not in response.content, f"{where} answered a stack trace: {response.content[:300]!r}"
