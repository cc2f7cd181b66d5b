"""The newsroom's journey in a real browser, through the real stack: an editor composes a post for a website and
a Weibo account and schedules it; screening flags it (a phone number); two different reviewers approve their
steps from the queue with the keyboard; it is published on the sandboxes; the post page shows each delivery's
timeline; a retraction from the post page removes every copy. Also: another city's post is a 403 page, and the
lists and the post page render with JavaScript off."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.people import NEIGHBOUR, make_user, password_of
from tests.support.stack import UNION, Stack

pytestmark = pytest.mark.timeout(300)

WEIBO_TEXT = "微博专版：职工书屋周六开放，欢迎报名。"
CHAIN = {"applies": "flagged", "steps": [{"name": "初审", "role": "reviewer"}, {"name": "复审", "role": "reviewer"}]}


def _weibo_account(stack: Stack) -> int:
    from core.db import session_scope
    from publisher import services

    stack.sandbox_call("POST", "/weibo/_sandbox/accounts", json={"uid": "6100000001", "access_token": "wb-web-1"})
    with session_scope() as s:
        account = services.add_account(
            s,
            services.SYSTEM,
            kind="weibo",
            name="工会微博",
            credentials={"access_token": "wb-web-1", "uid": "6100000001"},
            config={"base_url": "{sandbox}/weibo", "safe_domain": "{sandbox}", "rip": "127.0.0.1"},
            organization=UNION,
        )
        s.flush()
        return account.id


def _sign_in(browser: Any, web: str, name: str) -> Any:
    page = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN").new_page()
    page.goto(f"{web}/ui/review")
    assert "/login" in page.url  # sent to the form, then back
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", password_of(name))
    page.click("button[type=submit]")
    page.wait_for_url(f"{web}/ui/review")
    return page


def test_compose_review_publish_retract(stack: Stack, web: str, browser: Any, shots: Path) -> None:
    from core.clock import now
    from core.db import session_scope
    from core.settings import get_settings
    from publisher import services

    with session_scope() as s:
        services.set_review_chain(s, services.SYSTEM, UNION, CHAIN)
    make_user("first_reviewer", ("reviewer", UNION))
    make_user("second_reviewer", ("reviewer", UNION))
    make_user("outsider", ("editor", NEIGHBOUR), ("reviewer", NEIGHBOUR))
    site = stack.website_account("web1")
    weibo = _weibo_account(stack)

    # the editor composes, checks, schedules
    editor = _sign_in(browser, web, "editor")
    editor.goto(f"{web}/ui/compose")
    editor.fill("[data-testid=title]", "职工书屋开放通知")
    editor.fill("[data-testid=body]", "职工书屋本周六开放。\n\n报名请联系电话13812345678。")
    editor.check(f"input[name=accounts][value='{site}']")
    editor.check(f"input[name=accounts][value='{weibo}']")
    editor.wait_for_selector("[data-testid=preview-weibo]")
    editor.wait_for_selector("[data-testid=preview-website]")
    # Weibo gets a text of its own; its preview shows it, the website's keeps the common text
    editor.click("[data-testid=variant-weibo] summary")
    editor.fill("textarea[name=variant-body-weibo]", WEIBO_TEXT)
    editor.wait_for_function(
        "t => document.querySelector('[data-testid=preview-weibo]').innerText.includes(t)", arg=WEIBO_TEXT[:6]
    )
    assert WEIBO_TEXT[:6] not in editor.locator("[data-testid=preview-website]").inner_text()
    editor.click("text=预审")
    verdict = editor.wait_for_selector("[data-testid=verdict]")
    assert verdict.inner_text() == "review"
    assert editor.locator("#verdict mark.c-privacy").inner_text() == "13812345678"
    local = (now() + timedelta(seconds=30)).astimezone(get_settings().tz)
    editor.fill("[data-testid=at]", local.strftime("%Y-%m-%dT%H:%M"))
    editor.screenshot(path=str(shots / "compose.png"), full_page=True)
    editor.click("[data-testid=create]")
    editor.wait_for_url(f"{web}/ui/posts/*")
    post_id = int(editor.url.rsplit("/", 1)[1])
    stack.wait_for(lambda: stack.post(post_id)["state"] == "needs_review", what="screening flagged it")

    # two reviewers, each a step, from the queue with the keyboard
    for n, name in enumerate(("first_reviewer", "second_reviewer")):
        page = _sign_in(browser, web, name)
        page.keyboard.press("j")
        page.keyboard.press("Enter")
        page.wait_for_url(f"{web}/ui/posts/{post_id}")
        assert page.locator("[data-testid=post-body] mark.c-privacy").inner_text() == "13812345678"
        if n == 0:
            page.screenshot(path=str(shots / "review.png"), full_page=True)
        page.keyboard.press("a")
        page.wait_for_load_state("load")
        page.wait_for_function("document.querySelector('ol.chain li.done') !== null")
    info = stack.wait_for(
        lambda: (p := stack.post(post_id))["state"] == "published" and p, timeout=90, what="published on both"
    )
    assert {d["kind"] for d in info["deliveries"]} == {"website", "weibo"}
    statuses = stack.sandbox_call("GET", "/weibo/_sandbox/state")["statuses"]
    assert any(WEIBO_TEXT[:6] in st["text"] for st in statuses), statuses  # the variant went to Weibo

    # the post page: each delivery's timeline; then a retraction everywhere
    editor.goto(f"{web}/ui/posts/{post_id}")
    assert editor.locator("[data-testid=post-state]").inner_text() == "published"
    assert editor.locator("[data-testid=delivery]").count() == 2
    assert "delivery.attempt" in editor.locator("ol.timeline").first.inner_text()
    editor.screenshot(path=str(shots / "post.png"), full_page=True)
    # engagement grows on the platforms (the sandbox's clock, a day on), and is collected back
    from publisher.delivery.metrics import collect_metrics

    stack.sandbox_call("POST", "/weibo/_sandbox/clock/advance", json={"seconds": 86_400})
    assert collect_metrics() >= 1
    editor.goto(f"{web}/ui/dashboard")
    likes = editor.locator("table").last.locator("tbody tr").first.locator("td").nth(5).inner_text()
    assert int(likes) > 0, likes  # the top post's likes, from the metric snapshots
    for name in ("calendar", "dashboard", "ranking"):  # the matrix's views, with this post in them
        editor.goto(f"{web}/ui/{name}")
        editor.wait_for_load_state("networkidle")
        editor.screenshot(path=str(shots / f"{name}.png"), full_page=True)
    assert "工会微博" in editor.content()  # the ranking lists the Weibo account
    editor.goto(f"{web}/ui/posts/{post_id}")
    editor.on("dialog", lambda dialog: dialog.accept())
    editor.click("button.danger")
    editor.wait_for_selector("#retract-report[data-done='1']")
    assert stack.post(post_id)["state"] == "retracted"
    assert all(p["status"] == "trash" for p in stack.wp_posts("web1"))

    # another city's people cannot open it: a 403 page
    outsider = _sign_in(browser, web, "outsider")
    response = outsider.goto(f"{web}/ui/posts/{post_id}")
    assert response.status == 403 and outsider.locator("[data-testid=error-message]").count() == 1

    # without JavaScript the lists and the post page still render
    context = browser.new_context(java_script_enabled=False)
    plain = context.new_page()
    plain.goto(f"{web}/login?next=/ui/posts")
    plain.fill("input[name=name]", "editor")
    plain.fill("input[name=password]", password_of("editor"))
    plain.click("button[type=submit]")
    plain.wait_for_url(f"{web}/ui/posts")
    assert "职工书屋开放通知" in plain.content()
    plain.goto(f"{web}/ui/posts/{post_id}")
    assert plain.locator("[data-testid=delivery]").count() == 2
    context.close()


def test_a_scheduled_post_is_dragged_to_a_new_time_on_the_calendar(stack: Stack, web: str, browser: Any) -> None:
    from core.clock import now, parse_local
    from core.db import session_scope
    from core.settings import get_settings
    from publisher import services

    site = stack.website_account("web2")
    tz = get_settings().tz
    # tomorrow 10:00 local: clean text, so screening approves it and it waits as scheduled
    day = (now().astimezone(tz) + timedelta(days=1)).date()
    due = f"{day.isoformat()} 10:00"
    with session_scope() as s:
        post = services.create_post(
            s, stack.editor.principal, title="职工健步走活动", body="本周举办职工健步走活动。", accounts=[site]
        )
        services.schedule_post(s, stack.editor.principal, post.id, parse_local(due))
        post_id = post.id
    stack.wait_for(lambda: stack.post(post_id)["state"] == "scheduled", what="screened and scheduled")

    editor = _sign_in(browser, web, "editor")
    editor.goto(f"{web}/ui/calendar")
    event = editor.locator(".ec-event", has_text=f"#{post_id} ")
    try:
        event.wait_for(timeout=5000)
    except Exception:  # tomorrow is in next week (today is Sunday): go there
        editor.click(".ec-next")
        event.wait_for(timeout=5000)
    editor.on("dialog", lambda dialog: dialog.accept())
    before = stack.post(post_id)["schedule"]["due_at"]
    moved = None
    for _ in range(3):  # the calendar may re-render under the pointer while its events load: drag again then
        editor.wait_for_load_state("networkidle")
        event = editor.locator(".ec-event", has_text=f"#{post_id} ")
        event.evaluate("el => el.scrollIntoView({block: 'center'})")  # room below it to drag into
        box = event.bounding_box()
        assert box is not None
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        editor.mouse.move(x, y)
        editor.mouse.down()
        for step in range(1, 11):  # an event lasts 30 minutes: two of its heights are an hour
            editor.mouse.move(x, y + 2 * box["height"] * step / 10)
        editor.mouse.up()
        try:
            moved = stack.wait_for(
                lambda: (due := stack.post(post_id)["schedule"]["due_at"]) != before and due, timeout=8, what="moved"
            )
            break
        except AssertionError:
            continue
    assert moved, f"the post was not moved from {before}"
    assert moved.startswith(f"{day.isoformat()}T11:00"), (before, moved)


def test_the_pages_fit_a_phone(stack: Stack, web: str, browser: Any) -> None:
    """At a phone's width (390 px) no page is wider than the screen: wide tables scroll inside their card."""
    context = browser.new_context(viewport={"width": 390, "height": 844}, locale="zh-CN", is_mobile=True)
    page = context.new_page()
    page.goto(f"{web}/login")
    page.fill("input[name=name]", "editor")
    page.fill("input[name=password]", password_of("editor"))
    page.click("button[type=submit]")
    page.wait_for_url(f"{web}/")
    for path in ("/", "/ui/posts", "/ui/compose", "/ui/accounts", "/ui/calendar", "/ui/dashboard", "/ui/ranking"):
        page.goto(f"{web}{path}")
        page.wait_for_load_state("networkidle")
        width = page.evaluate("document.scrollingElement.scrollWidth")
        assert width <= 391, (path, width)
    context.close()
