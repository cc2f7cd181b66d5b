"""Workers' needs (职工诉求): the taxonomy, each need a rule in the query language of :mod:`monitor.query`.

Pure. Each need has a rule and a classifier: its query here, and an output of the monitor's trained model
(:mod:`monitor.signals`). Where the model's card says ``union`` (the shipped choice, made by cross-validation
on the training data), an item has a need when that need's query matches its text (title and body) or the model
scores it at 0.5 or more; the query's terms are the evidence, and a need the model alone found is listed with
no terms. Without the model file, the queries alone. The taxonomy is the issue's: wages and arrears, working
hours and overtime, social and medical insurance, work injury and safety, contracts and lay-offs, hardship
relief, rights protection, training and jobs. The queries are written here, where they can be read and
reviewed, and documented in ``monitor/README.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

from moderation.normalize import Normalized, normalize
from monitor import query as q
from monitor import signals


@dataclass(frozen=True)
class Need:
    """One kind of need: a stable key, its Chinese label, and the query that recognises it."""

    key: str
    label: str
    query: str


NEEDS: tuple[Need, ...] = (
    Need(
        "wages",
        "工资与欠薪",
        "欠薪 OR 拖欠 OR 讨薪 OR 克扣 OR 欠工资 OR 工资未发 OR 没发工资 OR 不发工资 OR 拿不到工资 OR 讨要工资 "
        "OR 工钱 OR 血汗钱 OR 最低工资 OR 绩效工资 OR 降薪 OR 工资条",
    ),
    Need(
        "hours",
        "工时与加班",
        "加班 OR 996 OR 007 OR 工时 OR 调休 OR 双休 OR 连续上班 OR 倒班 OR 夜班 OR 休息日 OR 带薪休假 OR 年假",
    ),
    Need(
        "insurance",
        "社保与医保",
        "社保 OR 医保 OR 五险一金 OR 公积金 OR 养老保险 OR 失业保险 OR 生育保险 OR 参保 OR 断缴 OR 补缴 OR 缴费基数",
    ),
    Need(
        "injury_safety",
        "工伤与安全",
        "工伤 OR 职业病 OR 安全事故 OR 安全隐患 OR 伤亡 OR 受伤 OR 尘肺 OR 劳动保护 OR 防护用品 OR 高温作业 "
        "OR 高温津贴 OR 坠落 OR 爆炸",
    ),
    Need(
        "contracts_layoffs",
        "合同与裁员",
        "劳动合同 OR 签合同 OR 不签合同 OR 裁员 OR 辞退 OR 开除 OR 解雇 OR 解除合同 OR 经济补偿 OR 赔偿金 "
        "OR N+1 OR 劳务派遣 OR 试用期 OR 停工 OR 停产 OR 倒闭 OR 跑路",
    ),
    Need(
        "hardship",
        "困难帮扶",
        "困难职工 OR 帮扶 OR 救助 OR 慰问 OR 送温暖 OR 大病 OR 重病 OR 生活困难 OR 助学 OR 金秋助学 OR 低保",
    ),
    Need(
        "rights",
        "维权与法律援助",
        "维权 OR 法律援助 OR 劳动仲裁 OR 仲裁 OR 投诉 OR 举报 OR 信访 OR 起诉 OR 劳动监察 OR 集体协商 OR 职代会",
    ),
    Need(
        "training_jobs",
        "培训与就业",
        "培训 OR 技能 OR 就业 OR 招聘 OR 招工 OR 再就业 OR 岗位 OR 求职 OR 职业技能 OR 技能大赛 OR 证书 OR 灵活就业",
    ),
)
NEED_KEYS: tuple[str, ...] = tuple(n.key for n in NEEDS)


@cache
def _compiled() -> tuple[tuple[Need, q.Node], ...]:
    return tuple((need, q.parse(need.query)) for need in NEEDS)


def needs_of(text: str | Normalized, scores: Mapping[str, float] | None = None) -> dict[str, list[str]]:
    """The needs an item's text shows: ``{need key: [terms found]}`` (empty when none; a need the model alone
    found has no terms). ``scores``: the model's outputs for this text when the caller scored a batch already."""
    found = rule_needs(text)
    model = signals.get_model()
    if model is None:
        return found
    if scores is None:
        norm = text if isinstance(text, Normalized) else normalize(text)
        scores = model.predict([norm.text])[0]
    by_model = {key for key in model.need_keys if scores.get(key, 0.0) >= signals.DECISION}
    if model.needs_mode == "model":
        return {key: found.get(key, []) for key in NEED_KEYS if key in by_model}
    return {key: found.get(key, []) for key in NEED_KEYS if key in by_model or key in found}


def rule_needs(text: str | Normalized) -> dict[str, list[str]]:
    """The needs whose query matches ``text`` alone: ``{need key: [terms found]}``."""
    found: dict[str, list[str]] = {}
    for need, node in _compiled():
        m = q.match(node, text)
        if m is not None:
            found[need.key] = list(m.terms)
    return found
