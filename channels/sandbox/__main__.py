"""Serve every platform sandbox on one port: ``python -m channels.sandbox [--host H] [--port P]``.

The service starts this as a subprocess (``matrix sandbox`` / ``matrix up``) and never imports the
sandboxes itself; it reads the demo accounts from ``GET /_sandbox/demo-accounts``. Defaults come from
``MATRIX_SANDBOX_HOST`` and ``MATRIX_SANDBOX_PORT`` (the variables the service reads for the sandbox's
address), else ``127.0.0.1:8100``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

import uvicorn

from channels.sandbox import create_app

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8100


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line, with defaults from the environment."""
    parser = argparse.ArgumentParser(
        prog="python -m channels.sandbox",
        description="Serve the platform sandboxes (WordPress, WeChat, Weibo, Toutiao) on one port.",
    )
    parser.add_argument("--host", default=os.environ.get("MATRIX_SANDBOX_HOST") or DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=int(os.environ.get("MATRIX_SANDBOX_PORT") or DEFAULT_PORT))
    parser.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"])
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the combined sandbox app with uvicorn until interrupted."""
    args = parse_args(argv)
    # h11, as in the tests' servers: always installed, and it reports a dropped reply (the
    # drop_after_commit fault) to the client as a truncated body, the way the tests expect.
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level=args.log_level, http="h11", ws="none")


if __name__ == "__main__":
    main()
