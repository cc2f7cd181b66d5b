"""What every ``matrix`` command shares: one-line errors (exit 2), and who is signed in.

Its own module so that sub-apps (``matrix monitor``) act and fail exactly as the main CLI does without importing
it (the main CLI imports them to add them).
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from sqlalchemy.exc import DataError, OperationalError, ProgrammingError

from core.errors import MatrixError
from moderation.types import ModerationError
from publisher import services
from publisher.services import Principal

console = Console()
err = Console(stderr=True)


def fail(message: str) -> None:
    """Print one red line and exit 2."""
    err.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the publisher's and the moderation engine's errors into one line + exit 2."""

    try:
        yield
    except (MatrixError, ModerationError) as exc:
        fail(str(exc))
    except DataError as exc:  # a value the database refuses (a NUL character on PostgreSQL): the input's fault
        fail(f"the database refused a value: {_first_line(str(exc.orig))}")
    except (OperationalError, ProgrammingError) as exc:
        # a command run before the database was set up (SQLite: "no such table", PostgreSQL: UndefinedTable)
        missing = _MISSING_TABLE.search(str(exc.orig))
        if missing is None:
            raise
        table = missing.group(1) or missing.group(2)
        fail(f"the database has no table {table}: set it up with `matrix db upgrade` (or `make run`)")


_MISSING_TABLE = re.compile(r'no such table: (\w+)|relation "(?:\w+\.)?(\w+)" does not exist')


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0] if lines else "invalid value"


# ------------------------------------------------------------------------------------------ signing in


def _config_dir() -> Path:
    """Where the CLI keeps its token: ``MATRIX_CLI_CONFIG_DIR``, else the platform's config folder."""
    return Path(os.environ.get("MATRIX_CLI_CONFIG_DIR") or typer.get_app_dir("media-matrix"))


def _token_file() -> Path:
    return _config_dir() / "token"


def _source() -> str:
    """Where this CLI acts from, for the audit trail (``cli host-name``)."""
    return f"cli {socket.gethostname()}"


def _stored_token() -> str | None:
    """The token ``matrix login`` stored, or None."""
    path = _token_file()
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}")
    return text or None


def _token() -> str | None:
    """``MATRIX_TOKEN``, else the stored token, else None."""
    return os.environ.get("MATRIX_TOKEN", "").strip() or _stored_token()


def _principal(session) -> Principal:
    """The signed-in person (:class:`Unauthenticated` for a token that does not hold; one line if none)."""
    token = _token()
    if token is None:
        fail("not signed in: run `matrix login`")
    return services.authenticate(session, token, source=_source())
