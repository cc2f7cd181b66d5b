"""Fan-out benchmark: one post to N website-sandbox accounts through real Celery workers.

    python bench/fanout.py                       # PostgreSQL + Redis, 1,000 accounts, 2 worker processes
    python bench/fanout.py --backend embedded    # SQLite + the SQLite broker
    python bench/fanout.py --accounts 200 --workers 2 --concurrency 4

Prints deliveries/s (first due → last published) and p50/p95 of due → published per delivery, and checks
that every site got exactly one post. The sandbox runs in this process on a real socket; workers and beat
are separate processes, as in production.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.stack import Stack, require_services


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["services", "embedded"], default="services")
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2, help="worker processes (each `matrix worker -c C`)")
    parser.add_argument("--concurrency", type=int, default=1, help="pool size C of each worker")
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()
    if args.backend == "services":
        require_services()

    stack = Stack(args.backend, Path(tempfile.mkdtemp(prefix="mm-bench-")))
    stack.start()
    try:
        # the stack starts one worker; replace it with the requested shape
        stack.procs.pop("worker").terminate()
        for i in range(args.workers):
            stack.start_process(f"worker{i}", ["worker", "-c", str(args.concurrency), "--loglevel", "warning"])
        time.sleep(3)
        _run(stack, args)
    finally:
        stack.stop()


def _run(stack: Stack, args: argparse.Namespace) -> None:
    from sqlalchemy import select

    from publisher import services
    from publisher.crypto import encrypt_credentials
    from publisher.db import session_scope
    from publisher.models import Account, Delivery, Post
    from publisher.timeutil import now

    password = "abcd efgh ijkl mnop qrst uvwx"
    t0 = time.time()
    for i in range(args.accounts):
        stack.sandbox_call(
            "POST", "/wp/_sandbox/accounts", json={"site": f"b{i}", "username": "editor", "app_password": password}
        )
    with session_scope() as s:
        org = services.ensure_organization(s, "bench union")
        blob = encrypt_credentials({"username": "editor", "app_password": password})
        s.add_all(
            Account(
                organization_id=org.id,
                kind="website",
                name=f"bench {i}",
                credentials_enc=blob,
                config={"base_url": "{sandbox}/wp/" + f"b{i}"},
            )
            for i in range(args.accounts)
        )
        s.flush()
        ids = list(s.scalars(select(Account.id).where(Account.organization_id == org.id)).all())
        post = services.create_post(s, title="全省职工运动会开幕", body="全省职工运动会今天开幕。", accounts=ids)
        s.flush()
        post_id = post.id
    print(f"setup: {args.accounts} sites and accounts in {time.time() - t0:.1f} s")
    stack.wait_for(lambda: stack.post(post_id)["state"] == "approved", timeout=120, what="screening")
    with session_scope() as s:
        services.schedule_post(s, post_id, now())
    start = time.time()

    def done() -> bool:
        with session_scope() as s:
            states = s.scalars(select(Delivery.state).where(Delivery.post_id == post_id)).all()
        return len(states) == args.accounts and all(st == "published" for st in states)

    stack.wait_for(done, timeout=args.timeout, what="all deliveries published")
    wall = time.time() - start
    with session_scope() as s:
        rows = s.execute(
            select(Delivery.due_at, Delivery.published_at, Delivery.attempts).where(Delivery.post_id == post_id)
        ).all()
        state = s.get(Post, post_id).state
    latencies = sorted((p - d).total_seconds() for d, p, _ in rows)
    first_due = min(d for d, _, _ in rows)
    last_pub = max(p for _, p, _ in rows)
    span = (last_pub - first_due).total_seconds()
    posts = stack.sandbox_call("GET", "/wp/_sandbox/state")["sites"]
    per_site = [len(posts.get(f"b{i}", {}).get("posts", [])) for i in range(args.accounts)]
    print(f"backend={args.backend} accounts={args.accounts} workers={args.workers}x{args.concurrency} post={state}")
    print(f"deliveries/s (first due -> last published): {len(rows) / span:.1f}   (wall {wall:.1f} s)")
    print(
        f"due -> published: p50 {statistics.median(latencies):.2f} s, "
        f"p95 {latencies[int(0.95 * (len(latencies) - 1))]:.2f} s, max {latencies[-1]:.2f} s"
    )
    print(f"attempts: {sum(a for _, _, a in rows)} for {len(rows)} deliveries")
    print(f"posts per site: min {min(per_site)} max {max(per_site)} (must be exactly 1)")
    if min(per_site) != 1 or max(per_site) != 1:
        raise SystemExit("FAILED: a site did not get exactly one post")


if __name__ == "__main__":
    main()
