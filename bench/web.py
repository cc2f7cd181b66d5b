"""Server time of each web page with a large matrix in the database, on the embedded default (SQLite).

    python -m bench.web [--posts 10000] [--accounts 1000] [--requests 30]     (or: make bench-web)

A fresh installation in a temporary folder is filled directly (bulk inserts: 10,000 posts with a version, a
screening and a delivery each; 1,000 accounts over four organisations; a review queue of 200), then each page
is asked for ``--requests`` times in-process (no network: the time is the server's, sign-in check included)
as the people who use it: an editor (home, posts, compose, post page, calendar events), a reviewer (queue), an
admin (accounts, audit, users, policies), a monitor (the stream, filtered by a need, stories, the needs radar,
the alert log; as many monitor items as posts, over two weeks). Prints p50 and p95 per page.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path


def _fill(posts: int, accounts: int) -> dict[str, str]:
    """The organisations, people, accounts and posts; returns each person's token."""
    from sqlalchemy import insert, select

    from core.db import session_scope
    from publisher import services
    from publisher.domain.models import Account, Delivery, Post, PostVersion, Screening, User

    tokens = {}
    with session_scope() as s:
        province = services.ensure_organization(s, "省总工会")
        orgs = [province] + [services.ensure_organization(s, f"市{i}总工会", parent=province) for i in range(3)]
        s.flush()
        for name, role in (("editor", "editor"), ("reviewer", "reviewer"), ("admin", "admin"), ("monitor", "monitor")):
            user = services.create_user(s, services.SYSTEM, name, f"password-of-{name}", [(role, "省总工会")])
            _, tokens[name], _ = services.issue_credential(
                s, services.principal_for(user, "bench"), kind="token", name="bench"
            )
        editor_id = s.scalar(select(User.id).where(User.name == "editor"))
        s.execute(
            insert(Account),
            [
                {"kind": ("website", "weibo", "wechat", "toutiao")[i % 4], "name": f"账号{i}", "status": "active",
                 "organization_id": orgs[i % len(orgs)].id, "credentials_enc": b"", "config": {}}
                for i in range(accounts)
            ],
        )  # fmt: skip
        account_ids = list(s.scalars(select(Account.id)))
        for start in range(0, posts, 1000):
            batch = range(start, min(posts, start + 1000))
            post_rows = [
                {"organization_id": orgs[i % len(orgs)].id, "author_id": editor_id,
                 "state": "needs_review" if i < 200 else "published"}
                for i in batch
            ]  # fmt: skip
            ids = list(s.scalars(insert(Post).returning(Post.id), post_rows))
            body = "工会开展职工技能培训，本周六在职工书屋举行。" * 20
            versions = list(
                s.scalars(
                    insert(PostVersion).returning(PostVersion.id),
                    [{"post_id": p, "number": 1, "title": f"通知{p}", "body": body, "summary": "",
                      "content_hash": f"{p:064d}"} for p in ids],
                )
            )  # fmt: skip
            for p, v in zip(ids, versions, strict=True):
                s.execute(Post.__table__.update().where(Post.id == p).values(current_version_id=v))
            s.execute(
                insert(Screening),
                [
                    {"version_id": v, "decision": "review", "verdict": {"decision": "review", "hits": []}}
                    for v in versions
                ],
            )
            s.execute(
                insert(Delivery),
                [{"post_id": p, "version_id": v, "account_id": account_ids[p % len(account_ids)], "state": "published"}
                 for p, v in zip(ids, versions, strict=True)],
            )  # fmt: skip
        _fill_monitor(s, orgs, posts)
    return tokens


NEED_TEXTS = {"wages": "某厂拖欠工资三个月", "hours": "天天加班没有加班费", "training_jobs": "职工技能培训报名"}


def _fill_monitor(s, orgs, items: int) -> None:
    """As many monitor items as posts (one source per organisation, reposts two to a story, over two weeks),
    scored the way the pipeline stores them."""
    from datetime import timedelta

    from sqlalchemy import insert

    from core.clock import now
    from monitor.models import Item, Sighting, Source, Story

    sources = [
        s.scalar(insert(Source).returning(Source.id), {"organization_id": o.id, "name": f"源{o.id}",
                 "url": f"https://rsshub.example/{o.id}", "tags": []})
        for o in orgs
    ]  # fmt: skip
    t0 = now()
    keys = list(NEED_TEXTS)
    for start in range(0, items, 1000):
        batch = range(start, min(items, start + 1000))
        stories = list(s.scalars(insert(Story).returning(Story.id), [{"title": f"事件{i}", "item_count": 2}
                                                                        for i in batch[::2]]))  # fmt: skip
        rows = []
        for i in batch:
            key = keys[i % len(keys)]
            at = t0 - timedelta(minutes=2 * i)
            rows.append({
                "story_id": stories[(i - start) // 2], "source_id": sources[i % len(sources)], "link": f"https://e.org/{i}",
                "link_hash": f"{i:064d}", "content_hash": f"c{i:063d}", "title": f"{NEED_TEXTS[key]}{i}",
                "summary_html": f"<p>{NEED_TEXTS[key]}</p>", "text": NEED_TEXTS[key] * 5, "fetched_at": at,
                "published_at": at, "negativity": (i % 10) / 10,
                "scores": {"needs": {key: [NEED_TEXTS[key][:2]]}, "mentions": [], "moderation": {"decision": "pass"}},
            })  # fmt: skip
        ids = list(s.scalars(insert(Item).returning(Item.id), rows))
        s.execute(insert(Sighting), [{"item_id": i, "source_id": r["source_id"], "entry_key": r["link_hash"]}
                                     for i, r in zip(ids, rows, strict=True)])  # fmt: skip


def main() -> None:
    """Print p50 / p95 per page."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--posts", type=int, default=10_000)
    ap.add_argument("--accounts", type=int, default=1_000)
    ap.add_argument("--requests", type=int, default=30)
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="mm-bench-web-"))
    os.environ.update(
        {"MATRIX_DATA_DIR": str(folder), "MATRIX_MODERATION_CLASSIFIER": "0",
         "MATRIX_SECRET_KEY": "bench-secret-key-at-least-32-characters-long"}
    )  # fmt: skip
    from fastapi.testclient import TestClient

    from publisher import migrate

    migrate.upgrade()
    t = time.perf_counter()
    tokens = _fill(args.posts, args.accounts)
    print(f"filled {args.posts} posts, {args.accounts} accounts in {time.perf_counter() - t:.1f} s ({folder})")
    from datetime import date, timedelta

    from publisher.interfaces.api import app

    month = (date.today() - timedelta(days=7), date.today() + timedelta(days=28))  # a month view's window
    pages = [
        ("editor", "/"), ("editor", "/ui/posts"), ("editor", "/ui/compose"), ("editor", "/ui/posts/1"),
        ("editor", f"/ui/posts/{args.posts}"), ("reviewer", "/ui/review"), ("admin", "/ui/accounts"),
        ("admin", "/ui/audit"), ("editor", "/ui/notifications"), ("admin", "/ui/users"), ("admin", "/ui/policies"),
        ("editor", f"/ui/calendar/events?start={month[0]}&end={month[1]}"), ("monitor", "/ui/monitor"),
        ("monitor", "/ui/monitor?need=wages"), ("monitor", "/ui/monitor/stories"), ("monitor", "/ui/monitor/needs"),
        ("monitor", "/ui/monitor/alerts"),
    ]  # fmt: skip
    with TestClient(app) as client:
        for who, path in pages:
            headers = {"Authorization": f"Bearer {tokens[who]}"}
            client.get(path, headers=headers)  # warm: templates compiled, caches filled
            samples = []
            for _ in range(args.requests):
                start = time.perf_counter()
                response = client.get(path, headers=headers)
                samples.append(time.perf_counter() - start)
                if response.status_code != 200:
                    raise SystemExit(f"{path}: {response.status_code} {response.text[:200]}")
            samples.sort()
            p95 = samples[min(len(samples) - 1, int(len(samples) * 0.95))]
            print(f"{path:<40} as {who:<8} p50 {statistics.median(samples) * 1000:6.1f} ms  p95 {p95 * 1000:6.1f} ms")


if __name__ == "__main__":
    main()
