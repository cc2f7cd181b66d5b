"""Monitor benchmark: one whole polling cycle of 1,000 feeds through one real worker process.

    python -m bench.monitor                      # embedded default: SQLite + the SQLite broker (as `matrix up`)
    python -m bench.monitor --services           # PostgreSQL + Redis
    python -m bench.monitor --feeds 200 --items 20 --classifier     (or: make bench-monitor)

The feed sandbox (:mod:`monitor.sandbox`) runs in this process on a real socket; one worker (``matrix worker``,
prefork, ``--concurrency`` pool processes, consuming the monitor queue as the embedded default does) and beat
are separate processes. Each feed carries ``--items`` items made with the sandbox's own controls: ordinary
posts written from templates (``items``), one story reposted on ten feeds with small edits (``repost``), and a
few feeds in a burst (``burst``). Then every source is made due at one moment and the clock runs until every
source has been polled (fetch, parse, dedup, cluster, score, rules); then again, when every answer is a 304.

Prints a table: each cycle's wall time from "due" to "all sources polled", items scored per second, the
worker's peak RSS (its own and its pool's, from ``/proc/<pid>/status`` VmHWM), whether the moderation
classifier was on. The goal (issue 13) is a whole first cycle within 60 s.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from channels.sandbox.server import serve_in_thread
from monitor.sandbox import create_app
from tests.support.stack import Stack, require_services

GOAL_S = 60.0
_CITIES = ["南京", "苏州", "无锡", "常州", "徐州", "南通", "扬州", "盐城", "淮安", "镇江", "泰州", "宿迁"]
_FIRMS = ["某电子厂", "一家物流公司", "某建筑工地", "某纺织企业", "一家快递网点", "某汽车配件厂", "某连锁超市",
          "某外卖站点", "一家食品厂", "某物业公司"]  # fmt: skip
_TEMPLATES = [
    ("{firm}{n}名工人被拖欠工资", "{city}{firm}已有{m}个月没有发工资，工人们多次讨要无果，希望工会出面协调。"),
    ("{city}总工会开展夏送清凉慰问", "{city}总工会走访{n}个一线班组，为高温下坚守岗位的职工送去防暑用品。"),
    ("{firm}员工反映每天加班到深夜", "员工说连续{m}周没有休息日，加班费按最低标准计算，身体吃不消。"),
    ("{city}举办第{m}届职工技能大赛", "大赛设电工、焊工等{n}个项目，获奖选手可晋升职业技能等级。"),
    ("骑手送餐途中摔伤，谁来赔？", "{city}一名外卖骑手送餐时摔伤住院，平台和站点互相推诿，医药费已花了{n}00元。"),
    ("{firm}突然停产，员工经济补偿没着落", "{firm}宣布停产，{n}名员工被要求自愿离职，没有任何补偿。"),
    ("{city}发布{m}月份职工就业招聘会信息", "本次招聘会提供岗位{n}00余个，涉及制造、服务、物流等行业。"),
    ("职工书屋新到图书{n}册", "{city}某区总工会职工书屋新到图书，职工午休时间可以免费借阅。"),
    ("{firm}社保断缴{m}个月", "员工查询发现公司已经{m}个月没有缴纳社保，看病无法报销，去问人事也没人答复。"),
    ("{city}开展困难职工帮扶", "{city}总工会为{n}户困难职工家庭送去帮扶资金，并帮助子女申请助学金。"),
    ("工会为农民工讨回工资{n}万元", "{city}总工会法律援助律师介入后，{firm}已将拖欠的工资全部发放到位。"),
    ("{city}职工疗休养活动启动", "今年将组织{n}名一线职工、劳动模范分批参加疗休养。"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", action="store_true", help="PostgreSQL + Redis instead of the embedded default")
    parser.add_argument("--feeds", type=int, default=1000)
    parser.add_argument("--items", type=int, default=20, help="items per feed")
    parser.add_argument("--concurrency", type=int, default=2, help="pool processes of the one worker")
    parser.add_argument("--classifier", action="store_true", help="the moderation classifier on (default: rules)")
    parser.add_argument("--timeout", type=float, default=1800, help="longest wait for one cycle")
    parser.add_argument("--host-concurrency", type=int, default=8, help="requests in flight to the sandbox host")
    args = parser.parse_args()
    if args.services:
        require_services()

    feed_server = serve_in_thread(create_app())
    extra = {
        "MATRIX_MONITOR_POLL_INTERVAL_S": "1",
        # every bench feed is on one host, the sandbox, as they would be on an installation's own RSSHub: that
        # host alone is named with limits of its own (8 in flight, no spacing); every other host keeps the
        # polite defaults (2 in flight, 0.5 s apart), which alone would make 1,000 feeds on one host take 500 s
        "MATRIX_MONITOR_HOST_LIMITS": f"{feed_server.host}:{feed_server.port}={args.host_concurrency}/0",
        "MATRIX_MONITOR_POLL_BATCH": str(args.feeds),
        "MATRIX_MODERATION_CLASSIFIER": "1" if args.classifier else "0",
        "MATRIX_OUTBOUND_ALLOW": f"{feed_server.host}:{feed_server.port}",
    }
    stack = Stack(
        "services" if args.services else "embedded",
        Path(tempfile.mkdtemp(prefix="mm-bench-monitor-")),
        extra_env=extra,
        concurrency=args.concurrency,
    )
    try:
        _fill_sandbox(feed_server.url, args.feeds, args.items)
        stack.start()
        _run(stack, feed_server.url, args)
    finally:
        stack.stop()
        feed_server.stop()


def _fill_sandbox(base: str, feeds: int, per_feed: int) -> None:
    """Every route gets ``per_feed`` items: reposted stories (10 feeds each), bursts, and ordinary posts."""
    rng = random.Random(13)
    routes = [f"weibo/keyword/bench{i}" for i in range(feeds)]
    counts = dict.fromkeys(routes, 0)
    with httpx.Client(base_url=base, timeout=30) as client:

        def call(action: str, **body: object) -> None:
            client.post(f"/_sandbox/{action}", json=body).raise_for_status()

        for story in range(feeds // 5):  # two reposted stories per feed on average, each on ten feeds
            chosen = rng.sample(routes, 10)
            title, text = _post(rng, story)
            call("repost", routes=chosen, title=title, text=text, edits=True, seed=story)
            for r in chosen:
                counts[r] += 1
        for r in routes[: max(1, feeds // 50)]:  # 2 % of the feeds in a burst: one story retold many times
            n = per_feed - counts[r]
            if n > 0:
                title, text = _post(rng, 10_000 + counts[r])
                call("burst", route=r, title=title, text=text, count=n, seed=len(r))
                counts[r] += n
        for k, r in enumerate(routes):
            n = per_feed - counts[r]
            if n > 0:
                items = [dict(zip(("title", "text"), _post(rng, k * 100 + j), strict=True)) for j in range(n)]
                call("items", route=r, items=items)
            elif n < 0:  # more reposts than the feed holds: unusual, left as it is (a feed may carry more)
                pass


def _post(rng: random.Random, serial: int) -> tuple[str, str]:
    title, text = rng.choice(_TEMPLATES)
    fill = {"firm": rng.choice(_FIRMS), "city": rng.choice(_CITIES), "n": rng.randint(3, 300), "m": rng.randint(2, 12)}
    day = f"（{rng.randint(1, 12)}月{rng.randint(1, 28)}日，记者{serial % 97}号）"
    return title.format(**fill), text.format(**fill) + day


def _run(stack: Stack, base: str, args: argparse.Namespace) -> None:
    from sqlalchemy import func, insert, select, update

    from core.clock import now
    from core.db import READ_ONLY, get_engine, session_scope
    from monitor.models import Item, RuleHit, Sighting, Source, Story
    from monitor.models import Rule as MonitorRule
    from publisher import services

    far = now().replace(year=now().year + 5)
    with session_scope() as s:
        org = services.ensure_organization(s, "bench union")
        s.flush()
        s.execute(
            insert(Source),
            [{"organization_id": org.id, "name": f"bench {i}", "url": f"{base}/weibo/keyword/bench{i}",
              "interval_s": 3600, "tags": [], "next_poll_at": far} for i in range(args.feeds)],
        )  # fmt: skip
        for name, q in (("欠薪", "欠薪 OR 拖欠 OR 没有发工资"), ("加班", '加班 NOT "技能大赛"'),
                        ("社保", "社保 AND (断缴 OR 没有缴纳)"), ("工伤", "摔伤 NEAR/10 赔"),
                        ("停产", "停产 OR 裁员 OR 补偿")):  # fmt: skip
            s.add(MonitorRule(organization_id=org.id, name=name, query=q, scope={}, enabled=True))
    # beat takes seconds to start (more on a loaded box): a cycle is timed from a running beat's first tick on,
    # not from the processes' start-up
    log = stack.tmp / "worker.log"
    _wait(stack, lambda: "monitor.poll_due[" in log.read_text(errors="replace"), 120, "beat's first poll_due")
    rows = []
    for cycle in (1, 2):
        with session_scope() as s:
            s.execute(update(Source).values(next_poll_at=now()))
        due = time.time()

        def polled(cycle: int = cycle) -> bool:
            # a read that takes no write lock (SQLite): asked four times a second, it must not slow the worker
            with get_engine().connect() as conn:
                conn.execution_options(**READ_ONLY)
                return not conn.scalar(select(func.count()).select_from(Source).where(Source.fetch_count < cycle))

        _wait(stack, polled, args.timeout, f"cycle {cycle}")
        wall = time.time() - due
        with session_scope() as s:
            counts = {
                "sightings": s.scalar(select(func.count()).select_from(Sighting)),
                "items": s.scalar(select(func.count()).select_from(Item)),
                "stories": s.scalar(select(func.count()).select_from(Story)),
                "rule_hits": s.scalar(select(func.count()).select_from(RuleHit)),
                "parses": s.scalar(select(func.sum(Source.parse_count))),
                "failed": s.scalar(select(func.count()).select_from(Source).where(Source.failures > 0)),
            }
        rows.append((cycle, wall, counts))
    state = httpx.get(f"{base}/_sandbox/state", timeout=30).json()["feeds"]
    not_modified = sum(f["not_modified"] for f in state.values())
    own, pool = _peak_rss_mib(stack.procs["worker"].pid)
    c1, c2 = rows[0][2], rows[1][2]
    print(
        f"\nmonitor bench: backend={'services' if args.services else 'embedded'} feeds={args.feeds} "
        f"items/feed={args.items} worker=1 x {args.concurrency} pool processes, cores={os.cpu_count()}, "
        f"moderation classifier {'ON' if args.classifier else 'OFF (rules only)'}; "
        f"load average at the end {' / '.join(f'{x:.2f}' for x in os.getloadavg())} (1 / 5 / 15 min)"
    )
    print(f"{'':34}{'cycle 1 (200s)':>16}{'cycle 2 (304s)':>16}")
    print(f"{'due -> all sources polled (s)':34}{rows[0][1]:>16.1f}{rows[1][1]:>16.1f}")
    print(f"{'entries scored (sightings)':34}{c1['sightings']:>16}{c2['sightings'] - c1['sightings']:>16}")
    print(f"{'entries scored per second':34}{c1['sightings'] / rows[0][1]:>16.1f}{'-':>16}")
    print(f"{'feeds polled per second':34}{args.feeds / rows[0][1]:>16.1f}{args.feeds / rows[1][1]:>16.1f}")
    print(f"{'items stored / stories':34}{c1['items']:>10} / {c1['stories']:<4}{'':>16}")
    print(f"{'rule hits':34}{c1['rule_hits']:>16}{c2['rule_hits'] - c1['rule_hits']:>16}")
    print(f"{'bodies parsed':34}{c1['parses']:>16}{c2['parses'] - c1['parses']:>16}")
    print(f"{'304 answers (sandbox count)':34}{'':>16}{not_modified:>16}")
    print(f"{'sources with a failure':34}{c1['failed']:>16}{c2['failed']:>16}")
    print(f"worker peak RSS: main process {own:.0f} MiB, largest pool process {max(pool or [0]):.0f} MiB, "
          f"all {own + sum(pool):.0f} MiB")  # fmt: skip
    verdict = "MET" if rows[0][1] <= GOAL_S else "MISSED"
    print(f"goal: whole first cycle <= {GOAL_S:.0f} s: {verdict}")


def _wait(stack: Stack, predicate: object, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():  # type: ignore[operator]
            return
        if stack.procs["worker"].poll() is not None:
            raise SystemExit(f"the worker exited during {what}:\n{stack.logs()}")
        time.sleep(0.25)
    raise SystemExit(f"timed out waiting for {what}\n{stack.logs()}")


def _peak_rss_mib(pid: int) -> tuple[float, list[float]]:
    """VmHWM (peak resident set) of the worker's process (``matrix worker``'s Celery main) and its pool."""

    def hwm(p: int) -> float:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    def children(p: int) -> list[int]:
        try:
            return [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except OSError:
            return []

    # `matrix worker` may exec Celery in a child; the pool processes are the children of the one with most
    tree = [pid, *children(pid)]
    main_pid = max(tree, key=lambda p: len(children(p)))
    return hwm(main_pid), [hwm(c) for c in children(main_pid)]


if __name__ == "__main__":
    main()
