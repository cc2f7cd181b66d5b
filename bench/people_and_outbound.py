"""What sign-in and the outbound guard cost: Argon2id at the production parameters, and a guarded request
against a plain httpx one on a loopback server (kept-alive, and a new client per request).

    python -m bench.people_and_outbound [--requests 1000] [--hashes 20]     (or: make bench-people)

Loopback hides network latency on purpose: what is left is the guard's own work (one resolution and the
address check per new connection, nothing per kept-alive request).
"""

from __future__ import annotations

import argparse
import statistics
import time

import httpx
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from channels.sandbox.server import serve_in_thread
from core.http import AddressPolicy, guarded_client
from publisher.services import people


async def _ok(_request: object) -> Response:
    return Response(b"x")


def _ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    return f"median {statistics.median(ordered) * 1000:.2f} ms, p95 {ordered[int(len(ordered) * 0.95)] * 1000:.2f} ms"


def main() -> None:
    """Print one line per measurement."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--hashes", type=int, default=20)
    args = ap.parse_args()

    hashes, verifies = [], []
    for _ in range(args.hashes):
        t = time.perf_counter()
        digest = people._hasher.hash("a password of twelve")
        hashes.append(time.perf_counter() - t)
        t = time.perf_counter()
        people._hasher.verify(digest, "a password of twelve")
        verifies.append(time.perf_counter() - t)
    print(f"argon2id hash: {_ms(hashes)}; verify (one sign-in): {_ms(verifies)}")

    server = serve_in_thread(Starlette(routes=[Route("/", _ok)]))
    url = f"http://{server.host}:{server.port}/"
    policy = AddressPolicy.parse([f"{server.host}:{server.port}"])
    try:
        for name, make in (("plain httpx", httpx.Client), ("guarded", lambda: guarded_client(policy=policy))):
            with make() as client:
                client.get(url)
                kept = []
                for _ in range(args.requests):
                    t = time.perf_counter()
                    client.get(url)
                    kept.append(time.perf_counter() - t)
            fresh = []
            for _ in range(args.requests // 4):
                t = time.perf_counter()
                with make() as client:
                    client.get(url)
                fresh.append(time.perf_counter() - t)
            print(f"{name}: kept-alive {_ms(kept)}; new client and connection {_ms(fresh)}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
