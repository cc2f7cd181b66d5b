"""Training and evaluation data for the moderation classifier, derived reproducibly from the team's data.

Sources (read from ``/work/shared`` by default, or the ``--data-root`` given to the train/evaluate commands;
none of it is needed at run time):

* **COLD** (thu-coai/COLDataset, Apache-2.0): train/dev, binary offensive label -> ``abuse``. A seeded 10 %
  of *train* is held out as the model-selection slice ("select"); COLD dev is only ever reported, never tuned on.
* **SWSR** (aggiejiang/SWSR, MIT): SexComment.csv, sexist -> ``abuse``. No official split, so we make one
  (80 / 10 / 10 train / select / test, seed :data:`SWSR_SEED`) and commit the ids in
  ``moderation/data/model/swsr_split.json``.
* **Derived, weakly labelled** sentences for the categories without a data set (politics, porn, violence,
  gambling, fraud, ads): lexicon terms (konsheng/Sensitive-lexicon MIT, houbb/sensitive-word Apache-2.0)
  placed in templates that *use* them (spam, slogans, offers), plus hard negatives that never carry a
  positive label: ordinary news sentences (with words such as 招聘, 兼职, 主席 that noisy lexicons flag),
  warnings and reports that *discuss* the same terms, and anti-bias statements that quote an insult in
  order to condemn it (the main error source on COLD; see the team's classifier notes). Terms are split
  train / select / test (7 : 1 : 2) by a stable hash, so the derived test set only has terms the model
  never saw; templates are shared, so derived figures are an optimistic check that the labels were learnt,
  not a field estimate.

``privacy`` is left out of the model on purpose: personal data is found exactly by the PII detectors.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

MODEL_CATEGORIES: tuple[str, ...] = ("politics", "porn", "violence", "gambling", "fraud", "ads", "abuse")
DEFAULT_DATA_ROOT = Path("/work/shared")
SWSR_SEED = 20261123
DERIVED_SEED = 7
SPLIT_FILE = Path(__file__).parent / "data" / "model" / "swsr_split.json"


class DatasetError(RuntimeError):
    """Training data is missing or malformed."""


@dataclass
class Example:
    """One text with a 0/1 target per model category."""

    text: str
    labels: dict[str, int]
    source: str
    split: str  # train | select | dev | test
    meta: dict[str, str] = field(default_factory=dict)

    def target(self) -> list[float]:
        """The label vector in :data:`MODEL_CATEGORIES` order."""
        return [float(self.labels.get(c, 0)) for c in MODEL_CATEGORIES]


def _stable_bucket(key: str, modulo: int, salt: str = "") -> int:
    """A bucket that does not depend on Python's per-process string hashing."""
    return int(hashlib.sha1(f"{salt}{key}".encode(), usedforsecurity=False).hexdigest()[:8], 16) % modulo


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise DatasetError(f"{path} not found (pass --data-root)")
    with path.open(encoding="utf-8-sig", newline="") as fh:
        return list(csv.DictReader(fh))


def load_cold(root: Path = DEFAULT_DATA_ROOT) -> list[Example]:
    """COLD train (split into train/select) and dev rows, labelled for ``abuse`` only."""
    out: list[Example] = []
    for name in ("train", "dev"):
        for row in _read_csv(root / "datasets" / "COLD" / f"{name}.csv"):
            rid = row.get("") or row.get("\ufeff") or ""
            split = name
            if name == "train" and _stable_bucket(rid, 10, "cold-select") == 0:
                split = "select"
            out.append(
                Example(
                    row["TEXT"],
                    {"abuse": int(row["label"])},
                    "cold",
                    split,
                    {"id": rid, "topic": row["topic"]},
                )
            )
    return out


def swsr_split(root: Path = DEFAULT_DATA_ROOT, write: bool = False) -> dict[str, list[str]]:
    """The fixed SWSR split: from the committed file, or (``write=True``) made from :data:`SWSR_SEED`."""
    if SPLIT_FILE.is_file() and not write:
        data = json.loads(SPLIT_FILE.read_text())
        return {k: data[k] for k in ("train", "select", "test")}
    ids = sorted({r["index"] for r in _read_csv(root / "datasets" / "SWSR" / "SexComment.csv")}, key=int)
    random.Random(SWSR_SEED).shuffle(ids)  # noqa: S311 - a reproducible split, not a secret
    n = len(ids)
    split = {
        "train": sorted(ids[: int(n * 0.8)], key=int),
        "select": sorted(ids[int(n * 0.8) : int(n * 0.9)], key=int),
        "test": sorted(ids[int(n * 0.9) :], key=int),
    }
    if write:
        SPLIT_FILE.parent.mkdir(parents=True, exist_ok=True)
        SPLIT_FILE.write_text(json.dumps({"seed": SWSR_SEED, "source": "SWSR SexComment.csv 'index'", **split}))
    return split


def load_swsr(root: Path = DEFAULT_DATA_ROOT) -> list[Example]:
    """SWSR SexComment rows with the fixed split, labelled for ``abuse`` (sexism)."""
    where = {i: s for s, ids in swsr_split(root).items() for i in ids}
    out = []
    for row in _read_csv(root / "datasets" / "SWSR" / "SexComment.csv"):
        text = row["comment_text"].strip()
        if text and row["index"] in where:
            out.append(Example(text, {"abuse": int(row["label"])}, "swsr", where[row["index"]], {"id": row["index"]}))
    return out


# ----------------------------------------------------------------------------------------------------
# Weakly labelled data for the categories without a data set
# ----------------------------------------------------------------------------------------------------

_CJK = re.compile(r"[\u4e00-\u9fff]")
# Words in the raw lists that are ordinary Chinese; using them as positives would teach the model that
# the news is harmful (the notes' "small fine-tunes over-flag normal text").
_ORDINARY = set(
    "兼职 招聘 网络 有意者 到货 本店 代购 客服 微店 淘宝 全职 网购 代理 专业代理 网络工作 腐败 贪污 拔出来 "
    "插进 子宫 大波 下载速度 视频来源 高清在线 全集在线 在线播放 免费使用 免费索取 救市 崩盘 证监会 资金周转 "
    "资金短缺 小额贷款 质押贷款 盘古 炸药 TNT 硝酸甘油 打人 拆迁 纠纷 盗窃 统一教 中国教徒 福音会".split()
)
_VIOLENT = re.compile(r"[枪弹炸爆雷刀杀恐砍毒]")


def _terms(path: Path, pattern: str | None = None, min_len: int = 2) -> list[str]:
    if not path.is_file():
        raise DatasetError(f"{path} not found (pass --data-root)")
    rx = re.compile(pattern) if pattern else None
    seen: dict[str, None] = {}
    for line in path.read_text(encoding="utf-8", errors="ignore").splitlines():
        term = line.strip()
        if len(term) < min_len or len(term) > 16 or not _CJK.search(term) or term in _ORDINARY:
            continue
        if rx and not rx.search(term):
            continue
        seen.setdefault(term, None)
    return list(seen)


def lexicon_terms(root: Path = DEFAULT_DATA_ROOT) -> dict[str, list[str]]:
    """Terms per category from the raw lexicons (categorised by the konsheng file, or by keyword for houbb)."""
    ks = root / "lexicons" / "konsheng-sensitive-lexicon"
    houbb = root / "lexicons" / "houbb-sensitive-word" / "dict_v20240407.txt"
    terror = _terms(ks / "暴恐词库.txt")
    return {
        "politics": _terms(ks / "反动词库.txt", min_len=3)
        + _terms(ks / "贪腐词库.txt", r"[共党匪g]")
        + [t for t in terror if not _VIOLENT.search(t)],
        "porn": _terms(ks / "色情类型.txt") + _terms(ks / "色情词库.txt"),
        "violence": _terms(ks / "涉枪涉爆.txt") + [t for t in terror if _VIOLENT.search(t)],
        "gambling": _terms(houbb, r"赌|博彩|百家乐|六合彩|时时彩|赌球|老虎机|娱乐城|投注|彩金|轮盘|21点"),
        "fraud": _terms(houbb, r"代开|发票|假证|办证|文凭|刷单|套现|洗钱|网贷|返利|传销|高仿|假钞|窃听")
        + _terms(ks / "补充词库.txt", r"^办|代办|文凭|证书"),
        "ads": [t for t in _terms(ks / "广告类型.txt") if not re.search(r"[交爆精乳逼奶妓婊龙凤]", t)],
    }


# Templates that *use* a term: the text itself is the offer, slogan or spam.
_POSITIVE_TEMPLATES: dict[str, list[str]] = {
    "politics": [
        "{t}！",
        "大家团结起来，{t}",
        "转发：{t}，让更多人知道真相",
        "{t}，这才是真相，别被洗脑了",
        "强烈呼吁{t}！",
        "今晚八点广场集合，{t}",
        "{t}——海外网站已经曝光",
        "支持{t}的请转发",
    ],
    "porn": [
        "高清{t}视频免费看",
        "{t}，点击链接进入 {url}",
        "今晚想看{t}的私聊我",
        "最新{t}资源合集，速存",
        "{t}图片大全，{n}G打包下载",
        "寂寞了吗？{t}，同城约",
        "{t}无码在线观看",
        "独家{t}，仅限今晚",
    ],
    "violence": [
        "{t}，联系电话{phone}",
        "教你{t}，一学就会",
        "出售{t}，货到付款",
        "{t}详细教程分享给大家",
        "想要{t}的私信，价格好说",
        "{t}，全国包邮，安全隐蔽",
        "手把手教学：{t}",
        "{t}，需要的联系{qq}",
    ],
    "gambling": [
        "{t}，注册就送{n}元彩金",
        "最火的{t}，日赚{n}不是梦",
        "加入{t}，稳赚不赔",
        "{t}官网：{url}",
        "{t}，充值返水{n}%，24小时出款",
        "老司机带你玩{t}，包赢",
        "{t}，真人荷官在线发牌",
        "想翻身的来{t}",
    ],
    "fraud": [
        "{t}，诚信可靠，联系{qq}",
        "专业{t}，当天办理",
        "{t}，包过包真，可查",
        "{t}，先办事后付款",
        "低价{t}，量大从优，加{wx}",
        "{t}，全国各地均可办理",
        "急需{t}的朋友看过来，{phone}",
        "{t}，保密快速",
    ],
    "ads": [
        "加微信{wx}，{t}",
        "{t}，详情+V：{wx}",
        "有意者扣扣{qq}，{t}",
        "{t}，私聊薇信{wx}领取福利",
        "{t}，日结{n}元，加Q{qq}",
        "需要{t}的联系{phone}",
        "{t}火热进行中，扫码进群",
        "{t}，点击主页链接咨询",
    ],
}
# Generic examples that need no term (the ways these categories are usually written).
_GENERIC_POSITIVES: dict[str, list[str]] = {
    "fraud": [
        "您的账户存在异常，请点击{url}验证身份，否则将被冻结",
        "恭喜您中奖{n}元，请先缴纳手续费{m}元",
        "我是你领导，明天来我办公室，先转{n}元到这个账户",
        "您的快递丢失，客服将为您理赔，请提供银行卡验证码",
        "刷单返利，一单{n}元，日结，先垫付",
        "内部消息，这只股票必涨，交{n}元会员费带你赚钱",
    ],
    "ads": [
        "加V{wx}了解更多",
        "+薇{wx}，有惊喜",
        "扣扣{qq}，私聊",
        "wx：{wx} 日结",
        "想赚钱的加我{wx}",
        "点我头像看简介，有福利",
        "需要的滴滴我，v{wx}",
    ],
    "gambling": ["澳门首家线上赌场上线了，{url}", "稳赚的投注方法，跟单{n}倍", "百家乐玩法揭秘，必赢"],
}
# Texts that discuss the same terms without doing the harm: warnings, reports, law, education.
_DISCUSS_TEMPLATES = [
    "警方提醒：{t}属于违法行为，市民切勿参与",
    "网信办集中清理{t}等有害信息",
    "如何识别{t}？专家教你几招",
    "{city}警方破获一起涉及{t}的案件，抓获犯罪嫌疑人{n}名",
    "遇到{t}请及时向平台举报",
    "新闻评论：{t}为何屡禁不止",
    "本文分析了{t}现象的成因和治理对策",
    "学校开展防范{t}主题教育活动",
]
_NEWS_TEMPLATES = [
    "{city}市召开{topic}工作会议，部署下一阶段重点任务",
    "{org}发布{year}年{topic}报告",
    "{city}地铁{n}号线今日开通运营，市民出行更方便",
    "记者从{org}获悉，{topic}取得新进展",
    "{city}大学举办春季招聘会，{n}家企业提供岗位",
    "暑期将至，教育部门提醒学生谨慎选择兼职",
    "{city}今天多云转晴，最高气温{n}度",
    "国家主席会见来访的外国代表团",
    "{org}党支部开展主题学习活动",
    "{city}新开了一家火锅店，味道不错，推荐大家去试试",
    "本店周末促销，全场八折，欢迎光临",
    "{city}马拉松比赛顺利举行，{n}名选手参赛",
    "{topic}专题培训班在{city}开班",
    "我们公司正在招聘前端工程师，欢迎投递简历",
    "周末带孩子去博物馆，看了恐龙化石展",
    "{city}警方提醒：注意防范电信诈骗",
    "今年的{topic}政策有哪些变化？一文读懂",
    "小区物业通知：明天上午停水检修",
    "这部电影的枪战场面拍得很震撼",
    "历史课上老师讲了抗日战争的故事",
    "央行宣布下调存款准备金率",
    "{city}举行{topic}新闻发布会",
    "老同学聚会，大家聊起了当年的趣事",
]
# Anti-bias frames: quoting an insult in order to reject it is not an insult (COLD labels these harmless).
_CONDEMN_FRAMES = [
    "有人说“{x}”，这是赤裸裸的歧视，不应该被容忍。",
    "看到评论区里“{x}”这种话真的很难过，请尊重每一个人。",
    "“{x}”——这样的言论本身就是偏见，我们要反对。",
    "总有人说“{x}”，可是以偏概全的地图炮毫无意义。",
    "不要再说“{x}”这种话了，每个群体里都有好人和坏人。",
    "“{x}”这种说法太伤人了，歧视不会让任何人变得更好。",
]
_ENDORSE_FRAMES = ["说得太对了，{x}", "{x}，我完全同意", "顶！{x}", "+1，{x}"]
_ABUSE_DISCUSS = [
    "网络上“{t}”这样的侮辱性词汇应该被清理",
    "请不要用“{t}”来称呼别人，这是不尊重",
    "“{t}”是一个带有歧视色彩的词，使用时要谨慎",
    "语言学研究：“{t}”一词的贬义是如何形成的",
]
_FILL = {
    "city": "北京 上海 广州 深圳 成都 武汉 杭州 南京 西安 重庆 长沙 郑州 青岛 厦门".split(),
    "org": "市政府 教育局 统计局 卫健委 人民银行 市科协 区文化馆 市总工会 团市委 交通运输局".split(),
    "topic": "安全生产 乡村振兴 营商环境 垃圾分类 科技创新 医疗改革 文化旅游 就业 消费 防汛".split(),
}


def _fill(template: str, rng: random.Random, **given: str) -> str:
    values = {
        "url": "www."
        + "".join(rng.choices("abcdefghkmnpqrstuvwxyz", k=rng.randint(4, 7)))
        + rng.choice([".com", ".cc", ".vip", ".net"]),
        "phone": f"1{rng.choice('3578')}{rng.randint(0, 9)}{rng.randint(10000000, 99999999)}",
        "qq": str(rng.randint(10000000, 3999999999)),
        "wx": rng.choice(["", "vx_", "wx"]) + "".join(rng.choices("abcdefghjkmnpqrstuvwxyz0123456789", k=8)),
        "n": str(rng.choice([3, 5, 8, 10, 18, 50, 88, 100, 200, 500, 888, 1000])),
        "m": str(rng.choice([20, 99, 200, 500])),
        "year": str(rng.randint(2018, 2026)),
        **{k: rng.choice(v) for k, v in _FILL.items()},
    }
    values.update(given)
    return template.format(**values)


def _split_of(bucket: int) -> str:
    """Buckets 0-1 of 10 are test, 2 is the model-selection slice, the rest train."""
    return "test" if bucket < 2 else "select" if bucket == 2 else "train"


def _term_split(term: str) -> str:
    # by term, so test and select terms never occur in training sentences
    return _split_of(_stable_bucket(term, 10, "derived-terms"))


def _template_id(kind: str, templates: list[str], template: str) -> str:
    """A derived example's template family (``meta["template"]``): grouped cross-validation holds whole
    templates out, as unseen spam is written in phrasings training never saw."""
    return f"{kind}:{templates.index(template)}"


def derived_examples(
    root: Path = DEFAULT_DATA_ROOT, cold: list[Example] | None = None, seed: int = DERIVED_SEED
) -> list[Example]:
    """Weakly labelled positives for the lexicon categories plus hard negatives, with a term-disjoint split."""
    rng = random.Random(seed)  # noqa: S311 - reproducible sampling, not a secret
    out: list[Example] = []
    terms = lexicon_terms(root)
    for cat, items in terms.items():
        rng.shuffle(items)
        for i, term in enumerate(items[:900]):
            split = _term_split(term)
            for template in rng.sample(_POSITIVE_TEMPLATES[cat], 2):
                meta = {"term": term, "template": _template_id(cat, _POSITIVE_TEMPLATES[cat], template)}
                out.append(Example(_fill(template, rng, t=term), {cat: 1}, f"derived-{cat}", split, meta))
            if i % 3 == 0:  # the same term, discussed rather than used: the context decides, not the word
                template = rng.choice(_DISCUSS_TEMPLATES)
                out.append(
                    Example(
                        _fill(template, rng, t=term),
                        {},
                        "derived-discuss",
                        split,
                        {
                            "term": term,
                            "category": cat,
                            "template": _template_id("discuss", _DISCUSS_TEMPLATES, template),
                        },
                    )
                )
        generic = _GENERIC_POSITIVES.get(cat, [])
        for template in generic:
            for i in range(25):
                split = _split_of(i % 10)
                meta = {"template": _template_id(f"{cat}-generic", generic, template)}
                out.append(Example(_fill(template, rng), {cat: 1}, f"derived-{cat}", split, meta))
    for i in range(1500):
        split = _split_of(i % 10)
        template = rng.choice(_NEWS_TEMPLATES)
        meta = {"template": _template_id("news", _NEWS_TEMPLATES, template)}
        out.append(Example(_fill(template, rng), {}, "derived-news", split, meta))

    # Abuse: anti-bias frames around real offensive COLD rows (train rows stay train, select rows stay out)
    # and discussion of SWSR's insult lexicon; endorsing frames are positives, so the frame is what matters.
    cold = cold if cold is not None else load_cold(root)
    offensive = [e for e in cold if e.split == "train" and e.labels["abuse"] == 1 and len(e.text) <= 60]
    rng.shuffle(offensive)
    for i, e in enumerate(offensive[:2400]):
        split = _split_of(i % 10)
        frames, labels, source = (
            (_ENDORSE_FRAMES, {"abuse": 1}, "derived-endorse")
            if i % 4 == 3
            else (_CONDEMN_FRAMES, {}, "derived-antibias")
        )
        frame = rng.choice(frames)
        meta = {"template": _template_id(source, frames, frame)}
        out.append(Example(_fill(frame, rng, x=e.text), labels, source, split, meta))
    lex = _terms(root / "datasets" / "SWSR" / "SexHateLex.txt")
    rng.shuffle(lex)
    for term in lex[:600]:
        template = rng.choice(_ABUSE_DISCUSS)
        out.append(
            Example(
                _fill(template, rng, t=term),
                {},
                "derived-antibias",
                _term_split(term),
                {"term": term, "template": _template_id("abuse-discuss", _ABUSE_DISCUSS, template)},
            )
        )
    return out


def all_examples(root: Path = DEFAULT_DATA_ROOT) -> list[Example]:
    """Every example the classifier is trained, selected or evaluated on."""
    cold = load_cold(root)
    return cold + load_swsr(root) + derived_examples(root, cold)


def load_feedback(path: Path) -> tuple[list[Example], int]:
    """Reviewers' feedback exported by ``matrix moderation feedback export`` (JSONL: ``text``, ``labels`` per
    model category or null, ``kind``, ``source``), as training examples; and how many lines were skipped
    (no labels: a missed harm whose category the reviewer did not name). Raises :class:`DatasetError` naming
    the first malformed line."""
    examples: list[Example] = []
    skipped = 0
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            text, labels = str(row["text"]), row.get("labels")
        except (ValueError, KeyError, TypeError) as exc:
            raise DatasetError(f"{path}:{number}: not a feedback line ({exc.__class__.__name__})") from None
        if not isinstance(labels, dict):
            skipped += 1
            continue
        clean = {c: int(bool(labels.get(c, 0))) for c in MODEL_CATEGORIES}
        source = str(row.get("source", "reviewer-feedback"))
        examples.append(Example(text, clean, source, "train", {"kind": str(row.get("kind", ""))}))
    return examples, skipped


def by_split(examples: Iterable[Example], *splits: str) -> list[Example]:
    """The examples whose split is one of ``splits``."""
    return [e for e in examples if e.split in splits]


if __name__ == "__main__":  # pragma: no cover - data summary for the model card
    from collections import Counter

    ex = all_examples()
    print(Counter((e.source, e.split) for e in ex))
