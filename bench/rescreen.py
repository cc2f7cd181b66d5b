"""Re-screen benchmark: live posts screened again after a rules change, through a real screening worker.

    python bench/rescreen.py                        # PostgreSQL + Redis, 500 posts, rules only
    python bench/rescreen.py --classifier           # with the classifier, as production screens
    python bench/rescreen.py --backend embedded --posts 200

Seeds ``--posts`` published posts (realistic union-news lengths, made of the team's own dev sentences in
``tests/data/moderation_union_news_dev.txt``) through the real path: created, screened by the screening
worker, delivered to a WordPress sandbox site by a delivery worker. Then it changes the organisation's
deny-list (one term, which a few posts carry), which is what starts a re-screen in production: the change
wakes the scan after commit, and the screening worker (``matrix worker --kind screening -c 1``) re-screens the
live posts in batches of ``MATRIX_RESCREEN_BATCH`` while no new screening waits.

Prints posts re-screened per second, the latency per post (list change -> that post's re-screen recorded, p50 /
p95) and each batch's cost per post, and the screening latency of new posts (created -> screening recorded)
with the worker idle and while the re-screen runs: new screenings go first, so they should wait for at most the
batch the worker is in. Checks that every post was re-screened once and that exactly the posts carrying the
term were flagged (and none retracted).
"""

from __future__ import annotations

import argparse
import ast
import os
import random
import re
import signal
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.stack import UNION, Stack, require_services

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "moderation_union_news_dev.txt"
TERM = "劳动竞赛推进会"  # the term the list change adds; only the posts that carry it are flagged
TITLES = [
    "市总工会召开全委会议",
    "区工会走访慰问困难职工",
    "职工技能大赛开幕",
    "集体协商会议召开",
    "劳模创新工作室揭牌",
]


def _sentences() -> list[str]:
    """The team's own union-news sentences (comment lines left out)."""
    lines = DATA.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _bodies(n: int, flagged_every: int, rng: random.Random) -> list[tuple[str, str, bool]]:
    """``n`` (title, body, carries the term) posts of 8-20 sentences (roughly 300-900 characters, the length
    of a union's news item), every ``flagged_every``-th carrying the term the list change adds."""
    sentences = _sentences()
    posts = []
    for i in range(n):
        body = "\n\n".join(rng.choice(sentences) for _ in range(rng.randint(8, 20)))
        marked = flagged_every > 0 and i % flagged_every == 0
        if marked:
            body += f"\n\n会上还召开了{TERM}，部署下一阶段工作。"
        posts.append((f"{rng.choice(TITLES)}（第{i + 1}期）", body, marked))
    return posts


def _pct(values: list[float], q: int) -> float:
    """The q-th percentile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    return ordered[int(q / 100 * (len(ordered) - 1))]


def _wait(what: str, check, timeout: float, every: float = 0.3):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every)
    raise SystemExit(f"FAILED: timed out waiting for {what}")


def _screen_new(stack: Stack, account: int, n: int, spacing_s: float, tag: str) -> list[int]:
    """Create ``n`` new posts (not scheduled), ``spacing_s`` apart; each is screened by the worker."""
    from core.db import session_scope
    from publisher import services

    ids = []
    for i in range(n):
        with session_scope() as s:
            post = services.create_post(
                s,
                stack.editor.principal,
                title=f"新稿件{tag}第{i + 1}篇",
                body="区总工会举办职工书画展，展出作品一百余幅。\n\n展览将持续到月底，欢迎职工参观。",
                accounts=[account],
            )
            s.flush()
            ids.append(post.id)
        time.sleep(spacing_s)
    return ids


def _screening_latencies(post_ids: list[int]) -> list[float] | None:
    """Seconds from each post's version being written to its screening being recorded; None until all are."""
    from sqlalchemy import select

    from core.db import session_scope
    from publisher.domain.models import Post, PostVersion, Screening

    with session_scope() as s:
        rows = s.execute(
            select(PostVersion.created_at, Screening.created_at)
            .join(Post, Post.current_version_id == PostVersion.id)
            .outerjoin(Screening, Screening.version_id == PostVersion.id)
            .where(Post.id.in_(post_ids))
        ).all()
    if len(rows) < len(post_ids) or any(done is None for _, done in rows):
        return None
    return [(done - made).total_seconds() for made, done in rows]


def _rescreened(post_ids: list[int], since: datetime) -> list[datetime]:
    """When each of ``post_ids`` was re-screened at or after ``since`` (those not yet are left out)."""
    from sqlalchemy import select

    from core.db import session_scope
    from publisher.domain.models import Post, Screening

    with session_scope() as s:
        return list(
            s.scalars(
                select(Screening.rescreened_at)
                .join(Post, Post.current_version_id == Screening.version_id)
                .where(Post.id.in_(post_ids), Screening.rescreened_at >= since)
            )
        )


def _batches(stack: Stack) -> list[tuple[int, float]]:
    """(posts, seconds) of every finished ``rescreen_batch`` task, from the screening worker's log."""
    found = []
    text = (stack.tmp / "screening.log").read_text(errors="replace")
    for match in re.finditer(r"matrix\.rescreen_batch\[[^\]]+\] succeeded in ([0-9.]+)s: (\{[^}]*\})", text):
        counts = ast.literal_eval(match.group(2))  # the task's result as Celery logs it: a dict of ints
        posts = counts.get("passed", 0) + counts.get("flagged", 0) + counts.get("skipped", 0)
        if posts:
            found.append((posts, float(match.group(1))))
    return found


def run(stack: Stack, args: argparse.Namespace) -> bool:
    """Seed, change the list, measure, print; True if every check passed."""
    from sqlalchemy import func, select

    from core.clock import now
    from core.db import session_scope
    from publisher import services
    from publisher.domain.models import Delivery, LiveFlag, Post

    rng = random.Random(args.seed)
    account = stack.website_account("rescreen-bench")
    posts = _bodies(args.posts, args.flagged_every, rng)
    chars = [len(body) for _, body, _ in posts]
    t0 = time.time()
    ids: list[int] = []
    marked: set[int] = set()
    for start in range(0, len(posts), 50):  # 50 posts a transaction: a few seconds of seeding, not minutes
        with session_scope() as s:
            for title, body, carries in posts[start : start + 50]:
                post = services.create_post(s, stack.editor.principal, title=title, body=body, accounts=[account])
                services.schedule_post(s, stack.editor.principal, post.id, now())
                s.flush()
                ids.append(post.id)
                if carries:
                    marked.add(post.id)

    def settled() -> list[int] | None:
        # Screening sends some union news to review (a word of a dev sentence it asks a person about): those
        # posts wait for a reviewer and never go live, so the live set is what was published.
        with session_scope() as s:
            rows = s.execute(select(Post.id, Post.state).where(Post.id.in_(ids))).all()
        if any(state not in ("published", "needs_review", "rejected") for _, state in rows):
            return None
        return [post_id for post_id, state in rows if state == "published"]

    live = _wait("the seeded posts published (or sent to review)", settled, args.timeout, every=1.0)
    marked &= set(live)
    print(
        f"seeded {len(ids)} posts (body {min(chars)}-{max(chars)} characters, median {statistics.median(chars):.0f}) "
        f"in {time.time() - t0:.1f} s, screened and delivered by the workers: {len(live)} published, "
        f"{len(ids) - len(live)} held for review by screening (not live, not re-screened)"
    )
    ids = live

    time.sleep(2)  # let the worker go idle
    idle_ids = _screen_new(stack, account, args.new_posts, args.new_spacing_s, "甲")
    idle = _wait("the idle screenings", lambda: _screening_latencies(idle_ids), 120)

    with session_scope() as s:
        org = services.find_organization(s, UNION)
        services.add_moderation_term(s, services.SYSTEM, org.id, TERM, list_="deny", severity="review")
    changed = now()
    t_change = time.time()
    time.sleep(args.new_delay_s)  # the re-screen under way, then new posts arrive
    busy_ids = _screen_new(stack, account, args.new_posts, args.new_spacing_s, "乙")
    busy_done_at = len(_rescreened(ids, changed))
    done = _wait("every live post re-screened", lambda: len(_rescreened(ids, changed)) == len(ids) or None,
                 args.timeout)  # fmt: skip
    wall = time.time() - t_change
    busy = _wait("the screenings during the re-screen", lambda: _screening_latencies(busy_ids), 120)
    stamps = sorted(_rescreened(ids, changed))
    per_post = [(at - changed).total_seconds() for at in stamps]
    span = (stamps[-1] - stamps[0]).total_seconds() or 1e-9
    batches = _batches(stack)
    with session_scope() as s:
        flagged = set(s.scalars(select(LiveFlag.post_id).where(LiveFlag.post_id.in_(ids))))
        retracted = s.scalar(select(func.count()).where(Delivery.post_id.in_(ids), Delivery.state != "published"))

    load = os.getloadavg()
    print(f"re-screened {len(stamps)} posts: {len(stamps) / per_post[-1]:.1f} posts/s from the list change to the last "
          f"({per_post[-1]:.1f} s), {len(stamps) / span:.1f} posts/s first to last re-screen")  # fmt: skip
    print(f"latency per post (list change -> re-screen recorded): p50 {_pct(per_post, 50):.2f} s, "
          f"p95 {_pct(per_post, 95):.2f} s, max {per_post[-1]:.2f} s")  # fmt: skip
    if batches:
        cost = [sec / n * 1000 for n, sec in batches]
        print(f"batches: {len(batches)} of up to {stack.env.get('MATRIX_RESCREEN_BATCH', '20')} posts; worker time "
              f"per post p50 {_pct(cost, 50):.1f} ms, p95 {_pct(cost, 95):.1f} ms; one batch p95 "
              f"{_pct([sec for _, sec in batches], 95):.2f} s")  # fmt: skip
    print(f"new posts' screening (created -> screened), {args.new_posts} each: idle p50 {_pct(idle, 50):.2f} s, "
          f"max {max(idle):.2f} s; during the re-screen p50 {_pct(busy, 50):.2f} s, max {max(busy):.2f} s "
          f"({busy_done_at} of {len(ids)} re-screened when they were sent)")  # fmt: skip
    print(f"flagged {len(flagged)} (carrying the term: {len(marked)}); deliveries no longer published: {retracted}")
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} (a shared machine: others' work counts too); "
          f"wall {wall:.1f} s after the change")  # fmt: skip
    ok = bool(done) and len(stamps) == len(ids) and flagged == marked and retracted == 0
    print("OK" if ok else "FAILED")
    return ok


def main() -> None:
    """Parse the options, start the stack with a screening and a delivery worker, run, stop."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["services", "embedded"], default="services")
    parser.add_argument("--posts", type=int, default=500, help="published posts to re-screen")
    parser.add_argument("--classifier", action="store_true", help="screen with the classifier (default: rules)")
    parser.add_argument("--batch", type=int, default=20, help="MATRIX_RESCREEN_BATCH")
    parser.add_argument("--flagged-every", type=int, default=50, help="every N-th post carries the new term")
    parser.add_argument("--new-posts", type=int, default=8, help="new posts screened idle, and again during it")
    parser.add_argument("--new-spacing-s", type=float, default=0.5)
    parser.add_argument("--new-delay-s", type=float, default=1.0, help="after the change, before the new posts")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if args.backend == "services":
        require_services()
    # A SIGTERM (a timeout) still runs the clean-up below: workers stopped, the benchmark's database dropped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    env = {
        "MATRIX_MODERATION_CLASSIFIER": "1" if args.classifier else "0",
        "MATRIX_RESCREEN_BATCH": str(args.batch),
        "MATRIX_RESCREEN_INTERVAL_S": "5",
    }
    stack = Stack(args.backend, Path(tempfile.mkdtemp(prefix="mm-bench-rescreen-")), extra_env=env)
    stack.start()
    ok = False
    try:
        first = stack.procs.pop("worker")  # the stack's worker of every queue, replaced by one of each kind
        first.terminate()
        first.wait(30)
        stack.start_worker(name="screening", args=["worker", "--kind", "screening", "-c", "1", "--loglevel", "info"])
        stack.start_worker(name="delivery", args=["worker", "--kind", "delivery", "-c", "8", "--loglevel", "info"])
        print(f"backend={args.backend} classifier={'on' if args.classifier else 'off'} posts={args.posts} "
              f"batch={args.batch}")  # fmt: skip
        ok = run(stack, args)
    finally:
        stack.stop()
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
