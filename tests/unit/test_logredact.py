"""The log redaction (core/logredact.py): the patterns, and every record of every logger once installed."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from core import logredact
from core.logredact import MASK, redact


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Redaction installed for this test only, and a handler on a library-like logger writing to a buffer."""
    previous = logging.getLogRecordFactory()
    logredact.install()
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    logger = logging.getLogger("tests.logredact.httpx")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield buffer
    logger.removeHandler(handler)
    logging.setLogRecordFactory(previous)


@pytest.mark.parametrize(
    ("text", "secret", "kept"),
    [
        (  # httpx's INFO line for a WeChat call: the token rides in the query string
            'HTTP Request: POST http://sandbox/wechat/cgi-bin/draft/add?access_token=0demo1_Zx-9aQ "HTTP/1.1 200 OK"',
            "0demo1_Zx-9aQ",
            "/cgi-bin/draft/add?access_token=***",
        ),
        (
            "GET /cgi-bin/token?grant_type=client_credential&appid=wx5a1db0&secret=sandbox-secret-demo-1",
            "sandbox-secret-demo-1",
            "appid=wx5a1db0&secret=***",
        ),
        ("access_token=2.00demoWeiboToken&status=%E8%81%8C%E5%B7%A5&rip=127.0.0.1", "2.00demoWeiboToken", "&rip="),
        ("Authorization: Basic ZWRpdG9yOmFiY2QgZWZnaA==", "ZWRpdG9yOmFiY2QgZWZnaA==", "Authorization: ***"),
        ("sent Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig", "eyJhbGciOiJIUzI1NiJ9", "Authorization: ***"),
        ("Cookie: sessionid=demo-toutiao-session-1; sessionid_ss=demo-toutiao-session-1", "demo-", "Cookie: ***"),
        ("Set-Cookie: sessionid=abcdef123456; Path=/; HttpOnly", "abcdef123456", "Set-Cookie: ***"),
        ('{"appid": "wx1", "secret": "s3cr\\"et-value", "force_refresh": false}', "et-value", '"secret": "***"'),
        ("{'username': 'editor', 'app_password': 'abcd efgh ijkl mnop'}", "abcd efgh", "'app_password': '***'"),
        ("{'Authorization': 'Bearer abcdefgh123', 'Cookie': 'sessionid=zz'}", "abcdefgh123", "'Cookie': '***'"),
        ("WeChatChannel(token='wx_tok_123456')", "wx_tok_123456", "token=***"),
        ("postgresql+psycopg://matrix:hunter2-pw@db:5432/matrix", "hunter2-pw", "matrix:***@db"),
    ],
)
def test_credentials_are_masked_and_the_rest_kept(text: str, secret: str, kept: str) -> None:
    clean = redact(text)
    assert secret not in clean
    assert kept in clean


@pytest.mark.parametrize(
    "text",
    [
        "refreshing the token for wechat:wx5a1db0x0000demo1 (stable_token, force_refresh=false)",
        "the secret is never logged; a cookie jar; password reset requested",
        "xsrf_token=abc123 my_secret=visible",  # other keys are not ours to guess at (csrf_token is ours)
        "token expired: 42001 access_token expired",
        "POST http://127.0.0.1:8100/wp/demo/wp-json/wp/v2/posts 201",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact(text) == text


def test_a_library_record_is_redacted_whatever_its_handler(captured: io.StringIO) -> None:
    log = logging.getLogger("tests.logredact.httpx")
    url = "http://sandbox/wechat/cgi-bin/material/add_material?type=image&access_token=tok_SECRET_1"
    log.info('HTTP Request: %s %s "%s %d %s"', "POST", url, "HTTP/1.1", 200, "OK")
    assert "tok_SECRET_1" not in captured.getvalue()
    assert 'add_material?type=image&access_token=*** "HTTP/1.1 200 OK"' in captured.getvalue()


def test_arguments_keep_their_types_so_formatters_that_unpack_them_still_work() -> None:
    previous = logging.getLogRecordFactory()
    logredact.install()
    try:
        # uvicorn's access formatter unpacks (client, method, path, version, status) from record.args
        record = logging.getLogger("uvicorn.access").makeRecord(
            "uvicorn.access",
            logging.INFO,
            __file__,
            1,
            '%s - "%s %s HTTP/%s" %d',
            ("127.0.0.1:5000", "GET", "/accounts?access_token=abc123secret", "1.1", 200),
            None,
        )
    finally:
        logging.setLogRecordFactory(previous)
    assert record.args == ("127.0.0.1:5000", "GET", f"/accounts?access_token={MASK}", "1.1", 200)


def test_a_secret_split_between_format_and_argument_is_masked(captured: io.StringIO) -> None:
    logging.getLogger("tests.logredact.httpx").warning("posting with access_token=%s to %s", "tok_SPLIT_9", "wechat")
    assert "tok_SPLIT_9" not in captured.getvalue()
    assert "access_token=*** to wechat" in captured.getvalue()


def test_mapping_arguments_and_exception_text_are_masked(captured: io.StringIO) -> None:
    log = logging.getLogger("tests.logredact.httpx")
    log.error("Task %(name)s raised: %(exc)s", {"name": "deliver", "exc": "Unavailable('?secret=s3cret-m')"})
    try:
        raise RuntimeError("POST https://api.weixin.qq.com/cgi-bin/stable_token?secret=s3cret-tb failed")
    except RuntimeError:
        log.exception("delivery failed")
    out = captured.getvalue()
    assert "s3cret-m" not in out and "s3cret-tb" not in out
    assert "Task deliver raised" in out and "RuntimeError: POST" in out and "secret=***" in out


def test_install_is_idempotent() -> None:
    previous = logging.getLogRecordFactory()
    try:
        logredact.install()
        once = logging.getLogRecordFactory()
        logredact.install()
        assert logging.getLogRecordFactory() is once and logredact.installed()
    finally:
        logging.setLogRecordFactory(previous)
