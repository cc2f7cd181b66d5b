"""Chaos run: mixed deliveries on PostgreSQL + Redis while workers are killed and the servers restarted.

    python bench/chaos.py                                   # 10,000 deliveries (not in CI's time budget)
    python bench/chaos.py --deliveries 600 --kill-every-s 6 # a modest run

``--deliveries`` accounts, spread over website / WeChat / Weibo / Toutiao sandboxes (the accounts of
``bench/fanout.py``), each get exactly one post: ``--posts`` posts, each to its own slice of the accounts, all
due at once. ``--workers`` delivery workers of ``--threads`` threads (and one screening worker) take them while:

- a killer SIGKILLs a random delivery worker (its whole process group) every ``--kill-every-s`` seconds (±50 %)
  and starts it again;
- Redis is restarted once (``redis-cli shutdown nosave``: every queued message is lost) when a quarter of the
  deliveries are published, and PostgreSQL once (``pg_ctlcluster … restart``) at half;
- the sandboxes answer 5 % of all requests with a 503, and every second each platform's publish call gets
  ``--faults-per-s`` "slow down" answers (HTTP 429 with Retry-After; WeChat's errcode 45011) and as many lost
  answers (the post is made, the connection dropped before the reply).

Then the chaos stops (faults cleared, every worker up), ``reconcile`` is run until quiet (three rounds in a
row with nothing to resolve and every delivery settled), and the run checks: every account has exactly one
post on its platform (the sandboxes' own state), every delivery is published (nothing lost), none is left in a
state that waits (nothing stuck). It prints the figures and exits 1 if a check failed.

It always leaves Redis and PostgreSQL running and kills the workers it started. Other users of the same Redis
and PostgreSQL see the restarts: run it on a machine of its own.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fanout import _posts_per_account, _rss_mb, _sandbox_account
from tests.support.stack import Stack, require_services

KINDS = ["website", "wechat", "weibo", "toutiao"]
PREFIXES = ("wp", "wechat", "weibo", "toutiao")
PUBLISH_PATH = {
    "wp": "wp/v2/posts",
    "wechat": "freepublish/submit",
    "weibo": "statuses/share",
    "toutiao": "article/publish",
}
# Each platform's "slow down", in its own dialect.
SLOW_DOWN: dict[str, dict[str, Any]] = {
    "wp": {"status": 429, "retry_after": 1},
    "wechat": {"errcode": 45011},
    "weibo": {"status": 429, "retry_after": 1},
    "toutiao": {"status": 429, "retry_after": 1},
}
WAITING = ("pending", "sending", "retry_wait", "unconfirmed", "awaiting_confirmation")
REDIS_START = [
    "redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379", "--save", "",
    "--appendonly", "no", "--dir", "/var/lib/redis", "--logfile", "/var/log/redis/ci.log",
]  # fmt: skip


class ChaosError(Exception):
    """The run could not be set up or driven (a server that does not come back, a worker that does not start)."""


# ------------------------------------------------------------------------------------------- the servers


def _cmd(*argv: str, check: bool = False, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run one of this script's fixed server commands (its program looked up on PATH)."""
    program = shutil.which(argv[0])
    if program is None:
        raise ChaosError(f"{argv[0]} is not installed")
    return subprocess.run(  # noqa: S603 - fixed argument lists of this script, no shell
        [program, *argv[1:]], capture_output=True, text=True, check=check, timeout=timeout
    )


def _pg_version() -> str:
    return sorted(os.listdir("/etc/postgresql"))[-1]


def _redis_up() -> bool:
    return _cmd("redis-cli", "ping", timeout=5).stdout.strip() == "PONG"


def _pg_up() -> bool:
    return _cmd("pg_isready", "-h", "127.0.0.1", "-q", timeout=10).returncode == 0


def _wait(check, what: str, timeout: float = 60) -> float:
    start = time.time()
    while time.time() - start < timeout:
        try:
            if check():
                return time.time() - start
        except (OSError, subprocess.SubprocessError):
            pass
        time.sleep(0.2)
    raise ChaosError(f"{what} did not come back in {timeout:.0f} s")


def restart_redis() -> float:
    """Shut Redis down without saving (queued messages and limiter keys are lost) and start it again; the
    seconds it was unreachable."""
    start = time.time()
    _cmd("redis-cli", "shutdown", "nosave", timeout=10)
    _wait(lambda: not _redis_up(), "Redis shutdown", 20)
    _cmd(*REDIS_START, check=True, timeout=20)
    _wait(_redis_up, "Redis")
    return time.time() - start


def restart_postgres() -> float:
    """Restart the PostgreSQL cluster (every connection is cut); the seconds it took to answer again."""
    start = time.time()
    _cmd("pg_ctlcluster", "--skip-systemctl-redirect", _pg_version(), "main", "restart", check=True, timeout=120)
    _wait(_pg_up, "PostgreSQL")
    return time.time() - start


def ensure_servers() -> None:
    """Whatever happened, leave Redis and PostgreSQL running."""
    if not _redis_up():
        _cmd(*REDIS_START, timeout=20)
        _wait(_redis_up, "Redis")
    if not _pg_up():
        _cmd("pg_ctlcluster", "--skip-systemctl-redirect", _pg_version(), "main", "start", timeout=120)
        _wait(_pg_up, "PostgreSQL")


# ---------------------------------------------------------------------------------------------- chaos


class Chaos:
    """The killer and the fault sprinkler, each a thread, until :meth:`stop`."""

    def __init__(self, stack: Stack, workers: dict[str, list[str]], args: argparse.Namespace) -> None:
        self.stack, self.workers, self.args = stack, workers, args
        self.rng = random.Random(args.seed)  # a repeatable chaos
        self.kills = 0
        self.sprinkled = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()  # the killer and the final "all up" check both start workers
        self._threads = [threading.Thread(target=self._kill_loop, daemon=True)]
        if args.faults_per_s > 0:
            self._threads.append(threading.Thread(target=self._sprinkle_loop, daemon=True))

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def _kill_loop(self) -> None:
        while not self._stop.wait(self.args.kill_every_s * self.rng.uniform(0.5, 1.5)):
            name = self.rng.choice(sorted(self.workers))
            with self._lock:
                proc = self.stack.procs.get(name)
                if proc is not None and proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(10)
                    self.kills += 1
                self.stack.start_process(name, self.workers[name])

    def _sprinkle_loop(self) -> None:
        k = self.args.faults_per_s
        while not self._stop.wait(1.0):
            for prefix in PREFIXES:
                path = PUBLISH_PATH[prefix]
                faults = [
                    {"path": path, "method": "POST", "drop_after_commit": True, "times": k},
                    {"path": path, "method": "POST", **SLOW_DOWN[prefix], "times": k},
                ]
                try:
                    self.stack.sandbox_call("POST", f"/{prefix}/_sandbox/faults", json={"faults": faults})
                    self.sprinkled += 2 * k
                except Exception as exc:  # the sandbox is in this process: report, never stop the run for it
                    self.errors.append(f"sprinkle {prefix}: {exc}")

    def all_workers_up(self) -> None:
        """Start again any worker that is not running (the killer may have just killed one)."""
        with self._lock:
            for name, shape in self.workers.items():
                proc = self.stack.procs.get(name)
                if proc is None or proc.poll() is not None:
                    self.stack.start_process(name, shape)


# ------------------------------------------------------------------------------------------------ run


def _states(post_ids: list[int]) -> collections.Counter[str]:
    from sqlalchemy import func, select

    from core.db import session_scope
    from publisher.domain.models import Delivery

    with session_scope() as s:
        rows = s.execute(
            select(Delivery.state, func.count()).where(Delivery.post_id.in_(post_ids)).group_by(Delivery.state)
        ).all()
    return collections.Counter({state: n for state, n in rows})


def _states_or_none(post_ids: list[int]) -> collections.Counter[str] | None:
    try:
        return _states(post_ids)
    except Exception:  # the database is being restarted: ask again on the next tick
        return None


def _setup(stack: Stack, args: argparse.Namespace) -> list[int]:
    """The accounts (one per delivery) and the posts, screened and approved, not yet scheduled."""
    from sqlalchemy import select

    from core.crypto import encrypt_credentials
    from core.db import session_scope
    from publisher import services
    from publisher.domain.models import Account

    with session_scope() as s:
        org = services.ensure_organization(s, "chaos union")
        for i in range(args.deliveries):
            kind = KINDS[i % len(KINDS)]
            credentials, config = _sandbox_account(stack, kind, i)
            if kind == "wechat":
                # The sandbox settles a submit at once (settle_s 0), so a lost submit's article is listed at
                # once too: the adapter need not wait its production grace (600 s) before publishing again.
                config = {**config, "submit_grace_s": args.wechat_grace_s}
            s.add(
                Account(
                    organization_id=org.id,
                    kind=kind,
                    name=f"chaos {kind} {i}",
                    credentials_enc=encrypt_credentials(credentials),
                    config=config,
                )
            )
        s.flush()
        ids = list(s.scalars(select(Account.id).where(Account.organization_id == org.id).order_by(Account.id)))
        # Slices of a multiple of four accounts: every post has website accounts for its Weibo posts to link to.
        size = max(4, -(-len(ids) // args.posts // 4) * 4)
        post_ids = []
        for n, start in enumerate(range(0, len(ids), size)):
            post = services.create_post(
                s,
                services.SYSTEM,
                title=f"全省职工运动会第{n}场",
                body=f"全省职工运动会第{n}场今天开赛。",
                accounts=ids[start : start + size],
            )
            s.flush()
            post_ids.append(post.id)
    stack.wait_for(lambda: all(stack.post(p)["state"] == "approved" for p in post_ids), timeout=300, what="screening")
    return post_ids


def run(stack: Stack, workers: dict[str, list[str]], args: argparse.Namespace) -> bool:
    """Drive the chaos, reconcile, check and print the figures; True if every check passed."""
    from sqlalchemy import select

    from core.clock import now
    from core.db import session_scope
    from publisher import services
    from publisher.delivery.reconcile import reconcile
    from publisher.domain.models import Delivery

    t0 = time.time()
    post_ids = _setup(stack, args)
    print(f"setup: {args.deliveries} accounts, {len(post_ids)} posts, screened in {time.time() - t0:.1f} s")
    for prefix in PREFIXES:
        stack.sandbox_call("POST", f"/{prefix}/_sandbox/faults", json={"error_rate": 0.05, "seed": args.seed})
    chaos = Chaos(stack, workers, args)
    with session_scope() as s:
        at = now()
        for p in post_ids:
            services.schedule_post(s, services.SYSTEM, p, at)
    start = time.time()
    chaos.start()
    restarts: dict[str, tuple[float, float]] = {}  # server -> (seconds into the run, seconds it was out)
    if args.no_server_restarts:
        restarts = {"redis": (0.0, 0.0), "postgres": (0.0, 0.0)}  # as if done: none is restarted
    while time.time() - start < args.timeout:
        states = _states_or_none(post_ids)
        if states is not None:
            published = states.get("published", 0)
            if "redis" not in restarts and published >= args.deliveries / 4:
                restarts["redis"] = (time.time() - start, restart_redis())
            elif "postgres" not in restarts and published >= args.deliveries / 2:
                restarts["postgres"] = (time.time() - start, restart_postgres())
            if sum(states.values()) == args.deliveries and not any(states.get(w) for w in WAITING):
                break  # every delivery settled (a run too small to reach a restart's threshold says so below)
        time.sleep(0.5)
    chaos_s = time.time() - start
    chaos.stop()
    states_at_stop = _states_or_none(post_ids) or collections.Counter()
    # what the sandboxes injected (503s, 429s / 45011, lost answers), read before the clear resets the count
    injected = {p: stack.sandbox_call("GET", f"/{p}/_sandbox/faults").get("injected", 0) for p in PREFIXES}
    for prefix in PREFIXES:
        stack.sandbox_call("POST", f"/{prefix}/_sandbox/faults", json={"clear": True})
    chaos.all_workers_up()

    # Reconcile until quiet: three rounds in a row with nothing to resolve and nothing waiting.
    rounds = quiet = 0
    reconciled = collections.Counter()
    deadline = time.time() + args.reconcile_timeout
    while quiet < 3 and time.time() < deadline:
        counts = reconcile()
        rounds += 1
        reconciled.update({k: v for k, v in counts.items() if v})
        states = _states(post_ids)
        nothing_waits = not any(states.get(w) for w in WAITING)
        quiet = quiet + 1 if nothing_waits and not any(counts.values()) else 0
        time.sleep(1.0)
    wall = time.time() - start

    states = _states(post_ids)
    with session_scope() as s:
        rows = s.execute(
            select(Delivery.due_at, Delivery.published_at, Delivery.attempts).where(Delivery.post_id.in_(post_ids))
        ).all()
    per_account = _posts_per_account(stack, args.deliveries, KINDS)
    latencies = sorted((p - d).total_seconds() for d, p, _ in rows if p is not None)
    attempts = [a for _, _, a in rows]
    lost = args.deliveries - states.get("published", 0)
    stuck = sum(states.get(w, 0) for w in WAITING)
    dupes = sum(1 for n in per_account if n > 1)
    missing = sum(1 for n in per_account if n == 0)

    print(f"deliveries {args.deliveries} ({', '.join(f'{k} {args.deliveries // 4}' for k in KINDS)}), "
          f"{len(post_ids)} posts, {args.workers} delivery workers x {args.threads} threads")  # fmt: skip
    restarted = "; ".join(f"{k} restarted at {at:.1f} s (out {out:.1f} s)" for k, (at, out) in restarts.items())
    if args.no_server_restarts:
        restarted = "servers not restarted (--no-server-restarts)"
    print(f"chaos: {chaos_s:.1f} s; workers SIGKILLed {chaos.kills} times; {restarted}")
    print(f"sandbox faults injected (503s, 429s, lost answers): {injected}; sprinkled {chaos.sprinkled}")
    print(f"states when the chaos stopped: {dict(states_at_stop)}")
    print(f"reconcile until quiet: {rounds} rounds, resolved {dict(reconciled)}; total {wall:.1f} s")
    print(f"states at the end: {dict(states)}")
    if latencies:
        print(f"due -> published: p50 {statistics.median(latencies):.1f} s, "
              f"p95 {latencies[int(0.95 * (len(latencies) - 1))]:.1f} s, max {latencies[-1]:.1f} s; "
              f"{len(latencies) / chaos_s:.1f} deliveries/s under chaos")  # fmt: skip
    print(f"attempts: {sum(attempts)} for {len(attempts)} deliveries (max {max(attempts, default=0)}, "
          f"{sum(a > 1 for a in attempts)} needed more than one)")  # fmt: skip
    rss = {name: _rss_mb(proc.pid) for name, proc in stack.procs.items() if name in workers}
    print("worker RSS (MB): " + ", ".join(f"{n} {v:.0f}" for n, v in sorted(rss.items())))
    print(f"posts per account: {dupes} with more than one, {missing} with none (must be 0 and 0)")
    print(f"lost (not published): {lost}; stuck (still waiting): {stuck}")
    for server in ("redis", "postgres"):
        if server not in restarts:
            print(f"note: {server} was not restarted (the run settled before its threshold)")
    for error in chaos.errors[:5]:
        print(f"note: {error}")
    ok = dupes == 0 and missing == 0 and lost == 0 and stuck == 0
    print("OK" if ok else "FAILED")
    return ok


def main() -> None:
    """Parse the options, start the stack and its workers, run, clean up (workers killed, servers up)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deliveries", type=int, default=10_000, help="accounts, each getting one post")
    parser.add_argument("--posts", type=int, default=20, help="posts the accounts are split between")
    parser.add_argument("--workers", type=int, default=2, help="delivery worker processes")
    parser.add_argument("--threads", type=int, default=16, help="threads of each delivery worker")
    parser.add_argument("--kill-every-s", type=float, default=10.0, help="mean seconds between two SIGKILLs")
    parser.add_argument("--faults-per-s", type=int, default=1, help="429s and lost answers per platform a second")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds the chaos may last at most")
    parser.add_argument("--reconcile-timeout", type=float, default=300)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--wechat-grace-s", type=float, default=20.0, help="WeChat accounts' submit_grace_s")
    parser.add_argument(
        "--no-server-restarts", action="store_true", help="kill workers and inject faults only (a shared machine)"
    )
    args = parser.parse_args()
    if args.deliveries < 4 or args.posts < 1:
        parser.error("--deliveries must be at least 4 and --posts at least 1")
    require_services()
    # A SIGTERM (a timeout, Ctrl-C's cousin) still runs the clean-up below: workers killed, servers left up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    stack = Stack("services", Path(tempfile.mkdtemp(prefix="mm-chaos-")), extra_env={"MATRIX_LOG_FORMAT": "json"})
    ok = False
    try:
        stack.start()
        first = stack.procs.pop("worker")  # the stack's one worker of every queue: replaced by the shape below
        os.killpg(first.pid, signal.SIGTERM)
        first.wait(30)
        stack.start_worker(name="screening", args=["worker", "--kind", "screening", "-c", "1", "--loglevel", "info"])
        workers = {
            f"delivery{i}": ["worker", "--kind", "delivery", "-c", str(args.threads), "--loglevel", "info"]
            for i in range(args.workers)
        }
        for name, shape in workers.items():
            stack.start_worker(name=name, args=shape)
        ok = run(stack, workers, args)
        print(f"logs (JSON lines): {stack.tmp}")
    finally:
        ensure_servers()
        stack.stop()
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
