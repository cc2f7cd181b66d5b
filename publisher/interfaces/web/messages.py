"""The web application's one message catalogue: Chinese by default, English available (``?lang=en`` sets it).

Why a dictionary and not gettext catalogues: the interface has a few hundred short strings in two languages,
kept side by side so a missing translation shows in review; a key with no entry is shown as itself.
"""

from __future__ import annotations

LANGUAGES = ("zh", "en")
DEFAULT_LANGUAGE = "zh"

MESSAGES: dict[str, tuple[str, str]] = {
    "app": ("新媒体矩阵", "media-matrix"),
    "sign_in": ("登录", "Sign in"),
    "sign_out": ("退出", "Sign out"),
    "name": ("用户名", "User name"),
    "password": ("密码", "Password"),
    "signed_in_as": ("当前用户", "Signed in as"),
    "home": ("首页", "Home"),
    "posts": ("稿件", "Posts"),
    "compose": ("写稿", "Compose"),
    "review_queue": ("待审稿件", "Review queue"),
    "accounts": ("账号", "Accounts"),
    "notifications": ("通知", "Notifications"),
    "api_docs": ("接口文档", "API docs"),
    "my_drafts": ("我的草稿与待发稿件", "My drafts and scheduled posts"),
    "nothing": ("暂无", "Nothing here"),
    "state": ("状态", "State"),
    "title": ("标题", "Title"),
    "body": ("正文（Markdown）", "Body (Markdown)"),
    "summary": ("摘要", "Summary"),
    "cover": ("封面图", "Cover image"),
    "updated": ("更新时间", "Updated"),
    "deliveries": ("分发", "Deliveries"),
    "account": ("账号", "Account"),
    "attempts": ("尝试次数", "Attempts"),
    "last_error": ("最近错误", "Last error"),
    "link": ("链接", "Link"),
    "screening": ("内容审核", "Screening"),
    "decision": ("结论", "Decision"),
    "hits": ("命中", "Hits"),
    "category": ("类别", "Category"),
    "rule": ("规则", "Rule"),
    "review_chain": ("审核流程", "Review chain"),
    "step": ("步骤", "Step"),
    "waiting": ("待审", "waiting"),
    "approve": ("通过 (a)", "Approve (a)"),
    "reject": ("驳回 (r)", "Reject (r)"),
    "override": ("复核放行", "Override"),
    "reason": ("理由", "Reason"),
    "retry": ("重试失败的分发", "Retry failed deliveries"),
    "unschedule": ("取消定时", "Cancel schedule"),
    "retract": ("全平台撤稿", "Retract everywhere"),
    "schedule": ("定时发布", "Schedule"),
    "schedule_at": ("发布时间", "Publish at"),
    "create": ("提交审核", "Submit for screening"),
    "check": ("预审", "Check now"),
    "preview": ("预览", "Preview"),
    "targets": ("发布到", "Publish to"),
    "diff": ("与上一版的差异", "Changes since the previous version"),
    "version": ("版本", "Version"),
    "keys": ("快捷键：j/k 上下移动，a 通过，r 驳回", "Keys: j/k to move, a to approve, r to reject"),
    "forbidden": ("无权访问", "Not allowed"),
    "not_found": ("未找到", "Not found"),
    "back_home": ("返回首页", "Back to the home page"),
    "error": ("出错了", "Something is wrong"),
    "monitor_area": ("舆情监测", "Monitoring"),
    "items": ("信息流", "Items"),
    "score": ("分值", "Score"),
    "language": ("English", "中文"),
    "done": ("已完成", "Done"),
    "chars": ("字", "characters"),
    "weibo_limit": (
        "微博正文上限 2000 字，超出部分以网站原文链接替代",
        "Weibo allows 2,000 characters; the rest links to the website copy",
    ),
    "audit": ("审计日志", "Audit log"),
    "verify": ("校验哈希链", "Verify the chain"),
    "filter": ("筛选", "Filter"),
    "time": ("时间", "Time"),
    "who": ("操作人", "Who"),
    "action": ("操作", "Action"),
    "object": ("对象", "Object"),
    # dashboards: the calendar, engagement, the ranking
    "calendar": ("发布日历", "Calendar"),
    "dashboard": ("数据看板", "Dashboard"),
    "ranking": ("矩阵排行", "Ranking"),
    "organization": ("单位", "Organisation"),
    "channel": ("平台", "Channel"),
    "scheduled": ("待发布", "Scheduled"),
    "published": ("已发布", "Published"),
    "clash": ("同账号一小时内撞车", "Clash: one account twice within an hour"),
    "drag_to_reschedule": ("拖动待发布稿件可改期", "Drag a scheduled post to reschedule it"),
    "reschedule_confirm": ("改到这个时间发布？", "Publish at this new time?"),
    "week": ("周", "week"),
    "month": ("月", "month"),
    "today": ("今天", "today"),
    "days": ("天数", "Days"),
    "day": ("日期", "Day"),
    "apply": ("筛选", "Apply"),
    "engagement": ("互动趋势", "Engagement over time"),
    "reads": ("阅读", "Reads"),
    "likes": ("点赞", "Likes"),
    "shares": ("转发", "Shares"),
    "comments": ("评论", "Comments"),
    "top_posts": ("热门稿件", "Top posts"),
    "export_csv": ("导出 CSV", "Export CSV"),
    "rank": ("名次", "Rank"),
    "index": ("指数", "Index"),
    "ranking_account": ("账号排行", "Accounts"),
    "ranking_organization": ("单位排行", "Organisations"),
    "index_definition": ("矩阵传播指数（MMI）的定义", "How the matrix index (MMI) is computed"),
    "index_explained": (
        "本系统自定义的指数，参照清博 WCI（微信传播指数）的思路，但并非 WCI 本身：统计窗口内发布条数 N、"
        "阅读 R、点赞 L、转发 S、评论 C（每条分发取最新数据相加），取对数后加权求和；只在同一统计窗口内可比。",
        "Our own index, in the spirit of 清博's WCI but not WCI itself: over the window, the deliveries published "
        "N and their reads R, likes L, shares S and comments C (each delivery's newest numbers, summed), "
        "log-scaled and weighted; scores compare within one window only.",
    ),
    "js_needed": ("此操作需要启用 JavaScript", "This action needs JavaScript"),
}


def translate(key: str, language: str) -> str:
    """The message ``key`` in ``language`` (``zh`` or ``en``); the key itself if the catalogue has no entry."""
    pair = MESSAGES.get(key)
    if pair is None:
        return key
    return pair[1] if language == "en" else pair[0]
