"""Fan-out benchmark: one post to N website-sandbox accounts through real Celery workers.

    python bench/fanout.py                       # PostgreSQL + Redis, 1,000 accounts, 2 worker processes
    python bench/fanout.py --backend embedded    # SQLite + the SQLite broker
    python bench/fanout.py --accounts 200 --workers 2 --concurrency 4
    python bench/fanout.py --mix --faults     # website + WeChat + Weibo + Toutiao, random 5xx + lost answers
    python bench/fanout.py --mix --latency-ms 300 --threads 32   # every platform call answers after 300 ms;
                                              # delivery workers (`matrix worker --kind delivery`, 32 threads each)

Prints deliveries/s (first due → last published) and p50/p95 of due → published per delivery, and checks
that every site got exactly one post. The sandbox runs in this process on a real socket; workers and beat
are separate processes, as in production.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.stack import Stack, require_services


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["services", "embedded"], default="services")
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2, help="worker processes (each `matrix worker -c C`)")
    parser.add_argument("--concurrency", type=int, default=1, help="pool size C of each worker")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--mix", action="store_true", help="spread the accounts over all four channels")
    parser.add_argument("--faults", action="store_true", help="inject 5%% random 5xx and lost answers everywhere")
    parser.add_argument("--latency-ms", type=int, default=0, help="every sandbox call answers after this long")
    parser.add_argument(
        "--threads", type=int, default=0,
        help="run --workers delivery workers of this many threads each (and one screening worker) instead of "
        "--workers prefork workers of --concurrency",
    )  # fmt: skip
    args = parser.parse_args()
    if args.backend == "services":
        require_services()

    stack = Stack(args.backend, Path(tempfile.mkdtemp(prefix="mm-bench-")))
    stack.start()
    try:
        # the stack starts one worker; replace it with the requested shape
        stack.procs.pop("worker").terminate()
        for i in range(args.workers):
            if args.threads:
                shape = ["worker", "--kind", "delivery", "-c", str(args.threads)]
            else:
                shape = ["worker", "-c", str(args.concurrency)]
            stack.start_process(f"worker{i}", [*shape, "--loglevel", "warning"])
        if args.threads:  # the post is screened first: a worker of that kind takes the screening queue
            stack.start_process("screening", ["worker", "--kind", "screening", "-c", "1", "--loglevel", "warning"])
        time.sleep(3)
        _run(stack, args)
    finally:
        stack.stop()


def _run(stack: Stack, args: argparse.Namespace) -> None:
    from sqlalchemy import func, select

    from core.clock import now
    from core.crypto import encrypt_credentials
    from core.db import session_scope
    from publisher import services
    from publisher.domain.models import Account, AuditEvent, Delivery, Post

    t0 = time.time()
    kinds = ["website", "wechat", "weibo", "toutiao"] if args.mix else ["website"]
    with session_scope() as s:
        org = services.ensure_organization(s, "bench union")
        for i in range(args.accounts):
            kind = kinds[i % len(kinds)]
            credentials, config = _sandbox_account(stack, kind, i)
            s.add(
                Account(
                    organization_id=org.id,
                    kind=kind,
                    name=f"bench {kind} {i}",
                    credentials_enc=encrypt_credentials(credentials),
                    config=config,
                )
            )
        s.flush()
        ids = list(s.scalars(select(Account.id).where(Account.organization_id == org.id)).all())
        post = services.create_post(
            s, services.SYSTEM, title="全省职工运动会开幕", body="全省职工运动会今天开幕。", accounts=ids
        )
        s.flush()
        post_id = post.id
    print(f"setup: {args.accounts} sites and accounts in {time.time() - t0:.1f} s")
    stack.wait_for(lambda: stack.post(post_id)["state"] == "approved", timeout=120, what="screening")
    if args.faults:
        _inject_faults(stack)
    if args.latency_ms:
        for prefix in ("wp", "wechat", "weibo", "toutiao"):
            stack.sandbox_call("POST", f"/{prefix}/_sandbox/faults", json={"latency_ms": args.latency_ms})
    cpu_before = _cpu_seconds(_tree(stack))
    with session_scope() as s:
        services.schedule_post(s, services.SYSTEM, post_id, now())
    start = time.time()

    def done() -> bool:
        with session_scope() as s:
            states = s.scalars(select(Delivery.state).where(Delivery.post_id == post_id)).all()
        return len(states) == args.accounts and all(st == "published" for st in states)

    stack.wait_for(done, timeout=args.timeout, what="all deliveries published")
    wall = time.time() - start
    cpu_after = _cpu_seconds(_tree(stack))
    with session_scope() as s:
        rows = s.execute(
            select(Delivery.due_at, Delivery.published_at, Delivery.attempts, Account.kind, Delivery.claimed_at)
            .join(Account, Account.id == Delivery.account_id)
            .where(Delivery.post_id == post_id)
        ).all()
        state = s.get(Post, post_id).state
    latencies = sorted((p - d).total_seconds() for d, p, *_ in rows)
    first_due = min(d for d, *_ in rows)
    last_pub = max(p for _, p, *_ in rows)
    span = (last_pub - first_due).total_seconds()
    per_site = _posts_per_account(stack, args.accounts, kinds)
    print(f"backend={args.backend} accounts={args.accounts} workers={args.workers}x{args.concurrency} post={state}")
    print(f"deliveries/s (first due -> last published): {len(rows) / span:.1f}   (wall {wall:.1f} s)")
    print(
        f"due -> published: p50 {statistics.median(latencies):.2f} s, "
        f"p95 {latencies[int(0.95 * (len(latencies) - 1))]:.2f} s, max {latencies[-1]:.2f} s"
    )
    for kind in kinds:
        mine = sorted((p - d).total_seconds() for d, p, _, k, _ in rows if k == kind)
        claimed = sorted((c - d).total_seconds() for d, _, _, k, c in rows if k == kind)
        print(
            f"  {kind}: {len(mine)} deliveries, due -> published p50 {_pct(mine, 50):.2f} s, "
            f"p95 {_pct(mine, 95):.2f} s;"
            f" due -> last claimed p50 {_pct(claimed, 50):.2f} s, p95 {_pct(claimed, 95):.2f} s"
        )
    print(f"attempts: {sum(a for _, _, a, *_ in rows)} for {len(rows)} deliveries")
    with session_scope() as s:
        ids = select(Delivery.id).where(Delivery.post_id == post_id)
        looked_up = s.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.object_type == "delivery", AuditEvent.object_id.in_(ids))
            .where(AuditEvent.action.in_(("delivery.stuck", "delivery.reconciled")))
        )
    # a delivery left in `sending` past MATRIX_STUCK_AFTER_S (8 s in the benchmark's stack) is taken for a dead
    # worker's and looked up on its platform: a cost that a healthy run should not pay
    print(f"taken for stuck or unconfirmed and looked up: {looked_up}")
    print(
        "CPU ms per delivery: "
        + ", ".join(f"{k} {1000 * (cpu_after[k] - cpu_before[k]) / len(rows):.1f}" for k in cpu_after)
        + f"; machine load average {os.getloadavg()[0]:.1f}"
    )
    rss = {name: _rss_mb(proc.pid) for name, proc in stack.procs.items() if name.startswith("worker")}
    print("worker RSS (MB, the process and its pool): " + ", ".join(f"{n} {v:.0f}" for n, v in sorted(rss.items())))
    print(f"posts per account: min {min(per_site)} max {max(per_site)} (must be exactly 1)")
    if min(per_site) != 1 or max(per_site) != 1:
        raise SystemExit("FAILED: a site did not get exactly one post")


PASSWORD = "abcd efgh ijkl mnop qrst uvwx"

#: Apps of this run only: the shared token cache lives in Redis, which outlives a run, and an app id of an earlier
#: run would find that run's token and cover there, stale for this sandbox (every delivery then paid for a
#: rejected token and a refused cover before its real calls, as no fresh installation does).
RUN = secrets.token_hex(3)


def _appid(i: int) -> str:
    """The WeChat app id of account ``i`` in this run."""
    return f"wxb{RUN}{i:07d}"


def _sandbox_account(stack: Stack, kind: str, i: int) -> tuple[dict, dict]:
    """Register account ``i`` on its platform's sandbox; returns our credentials and config for it."""
    if kind == "website":
        stack.sandbox_call(
            "POST", "/wp/_sandbox/accounts", json={"site": f"b{i}", "username": "editor", "app_password": PASSWORD}
        )
        return {"username": "editor", "app_password": PASSWORD}, {"base_url": "{sandbox}/wp/" + f"b{i}"}
    if kind == "wechat":
        appid = _appid(i)
        stack.sandbox_call("POST", "/wechat/_sandbox/accounts", json={"appid": appid, "secret": "s", "settle_s": 0})
        return {"appid": appid, "secret": "s"}, {"base_url": "{sandbox}/wechat", "source_url": "{sandbox}/"}
    if kind == "weibo":
        uid, token = str(7_000_000_000 + i), f"bench-weibo-{i}"
        stack.sandbox_call("POST", "/weibo/_sandbox/accounts", json={"uid": uid, "access_token": token})
        return {"access_token": token, "uid": uid}, {
            "base_url": "{sandbox}/weibo",
            "safe_domain": "127.0.0.1",
            "rip": "127.0.0.1",
        }
    session = f"bench-toutiao-{i}"
    stack.sandbox_call(
        "POST",
        "/toutiao/_sandbox/accounts",
        json={"user_id": str(8_000_000_000 + i), "sessionid": session, "review_s": 0},
    )
    return {"sessionid": session, "expires_at": "2099-01-01T00:00:00+00:00"}, {
        "base_url": "{sandbox}/toutiao",
        "mode": "session",
    }


def _pct(values: list[float], q: int) -> float:
    """The q-th percentile of sorted ``values`` (nearest rank)."""
    return values[int(q / 100 * (len(values) - 1))]


def _cpu_seconds(worker_pids: set[int]) -> dict[str, float]:
    """CPU seconds (user + system) used so far by this process (the sandboxes), the workers and the database
    server, from /proc (Linux): what each delivery costs the machine, apart from waiting on the network."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {"sandboxes+bench": 0.0, "workers": 0.0, "database": 0.0, "broker": 0.0}
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        cpu = (int(fields[11]) + int(fields[12])) / tick
        if int(entry.name) == me:
            out["sandboxes+bench"] += cpu
        elif int(entry.name) in worker_pids:
            out["workers"] += cpu
        elif cmd.startswith("postgres") or "postgres:" in cmd:
            out["database"] += cpu
        elif "redis-server" in cmd:
            out["broker"] += cpu
    return out


def _tree(stack: Stack) -> set[int]:
    """The worker processes of ``stack`` and their children (a prefork pool)."""
    found, todo = set(), [p.pid for name, p in stack.procs.items() if name.startswith(("worker", "screening"))]
    while todo:
        pid = todo.pop()
        found.add(pid)
        try:
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def _rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (a prefork pool), from /proc (Linux)."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) / 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                children = (task / "children").read_text().split()
                todo += [int(c) for c in children]
        except (OSError, StopIteration):
            continue
    return total


def _inject_faults(stack: Stack) -> None:
    """5% random 5xx on every platform call, plus answers lost after the platform committed the post."""
    lost = {
        "wp": "wp/v2/posts",
        "wechat": "freepublish/submit",
        "weibo": "statuses/share",
        "toutiao": "article/publish",
    }
    for prefix, path in lost.items():
        stack.sandbox_call(
            "POST",
            f"/{prefix}/_sandbox/faults",
            json={"error_rate": 0.05, "seed": 7, "faults": [{"path": path, "drop_after_commit": True, "times": 10}]},
        )


def _posts_per_account(stack: Stack, n: int, kinds: list[str]) -> list[int]:
    """How many live posts each account has on its platform's sandbox."""
    counts: list[int] = []
    wp = stack.sandbox_call("GET", "/wp/_sandbox/state")["sites"] if "website" in kinds else {}
    wx = stack.sandbox_call("GET", "/wechat/_sandbox/state")["apps"] if "wechat" in kinds else {}
    wb = stack.sandbox_call("GET", "/weibo/_sandbox/state")["statuses"] if "weibo" in kinds else []
    tt = stack.sandbox_call("GET", "/toutiao/_sandbox/state")["articles"] if "toutiao" in kinds else []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        if kind == "website":
            counts.append(sum(p["status"] == "publish" for p in wp.get(f"b{i}", {}).get("posts", [])))
        elif kind == "wechat":
            counts.append(len(wx.get(_appid(i), {}).get("articles", [])))
        elif kind == "weibo":
            counts.append(sum(st["uid"] == str(7_000_000_000 + i) and not st["deleted"] for st in wb))
        else:
            counts.append(sum(str(a.get("user_id")) == str(8_000_000_000 + i) for a in tt))
    return counts


if __name__ == "__main__":
    main()
