"""Readers' comments the sandboxes put under published posts: what workers write under a union's posts.

Shared by the WordPress, Weibo and WeChat sandboxes (each serves them in its own protocol). The texts are
written for the sandbox: some raise a worker's need (欠薪, 加班, 社保, 工伤, 合同…), some are angry, most are
harmless; none is a real person's. A control API adds them to a post (``POST <prefix>/_sandbox/comments``):
either the texts given, or ``count`` of these, taken in turn from a seeded position so a test is repeatable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from channels.sandbox.faults import SandboxError

COMMENT_MAX_CHARS = 2000  # longer than any platform allows; the sandbox refuses more


@dataclass(frozen=True)
class ReaderComment:
    """One comment to add: who wrote it (a display name) and what."""

    author: str
    text: str


READER_COMMENTS: tuple[ReaderComment, ...] = (
    ReaderComment("建筑工老李", "我们工地三个月没发工资了，包工头说等项目款，工会能不能帮忙讨薪？"),
    ReaderComment("快递小哥", "每天早七点干到晚十点，加班费一分没有，这算不算违法？"),
    ReaderComment("纺织厂女工", "公司一直没给我们交社保，说是合同上写了自愿放弃，这合法吗？"),
    ReaderComment("机修工王师傅", "去年在车间被机器压伤了手，工伤认定到现在还没下来，厂里也不管。"),
    ReaderComment("外卖骑手阿强", "平台说我们不是员工，出了事故谁来管？希望工会关注一下新就业形态劳动者。"),
    ReaderComment("匿名职工", "厂里突然宣布停产，老板跑路了，几百号人的工资找谁要？"),
    ReaderComment("食堂阿姨", "签了三年劳动合同，干了一年就被辞退，经济补偿只给一个月，太欺负人了！"),
    ReaderComment("夜班保安", "连着上了二十天夜班，一天都没休息，身体快扛不住了。"),
    ReaderComment("退休老工人", "感谢工会送温暖，慰问品收到了，谢谢大家！"),
    ReaderComment("技校学生", "请问技能大赛报名截止到什么时候？想参加焊工比赛。"),
    ReaderComment("热心读者", "活动办得很好，支持工会为职工办实事。"),
    ReaderComment("车间主任", "已转发到班组群，大家踊跃参加。"),
    ReaderComment("小区居民", "点赞！这样的职工之家越多越好。"),
    ReaderComment("某厂员工", "说得好听，真遇到事找工会根本没人管，投诉了三次都没回音，寒心。"),
    ReaderComment("困难职工家属", "家里老人大病住院，听说工会有困难帮扶，怎么申请？"),
    ReaderComment("新入职的小张", "公司试用期不签劳动合同，还扣押身份证，我该去哪里投诉举报？"),
    ReaderComment("环卫工人", "高温天气在外面扫马路，高温津贴一直没发，希望有人管管。"),
    ReaderComment("IT民工", "996是福报？加班到凌晨还不给调休，受够了。"),
    ReaderComment("医院护士", "五险一金的缴费基数按最低工资算的，这正常吗？"),
    ReaderComment("路过", "沙发"),
)


def take(count: int, start: int = 0) -> list[ReaderComment]:
    """``count`` of :data:`READER_COMMENTS`, in turn from position ``start`` (wrapping round)."""
    if not 1 <= count <= 1000:
        raise SandboxError("count must be 1-1000")
    n = len(READER_COMMENTS)
    return [READER_COMMENTS[(start + i) % n] for i in range(count)]


def from_body(body: dict[str, Any], start: int = 0) -> list[ReaderComment]:
    """The comments a control-API body asks for: ``{"comments": [{"text", "author"?}, …]}`` or ``{"count": N}``."""
    given = body.get("comments")
    if given is None:
        return take(int(body.get("count", 1)), start)
    if not isinstance(given, list) or not given:
        raise SandboxError("comments must be a non-empty list of {text, author}")
    out = []
    for row in given:
        if not isinstance(row, dict) or not str(row.get("text") or "").strip():
            raise SandboxError("each comment needs a text")
        text = str(row["text"])
        if len(text) > COMMENT_MAX_CHARS:
            raise SandboxError(f"a comment is at most {COMMENT_MAX_CHARS} characters")
        out.append(ReaderComment(str(row.get("author") or "读者"), text))
    return out
