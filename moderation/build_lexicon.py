"""Build the shipped lexicons from the third-party lists: ``python -m moderation.build_lexicon``.

Inputs (``--source``, default ``../shared/lexicons`` next to the repository, i.e. ``/work/shared/lexicons``):

* ``konsheng-sensitive-lexicon/`` (MIT): files by theme; the theme gives the category;
* ``houbb-sensitive-word/dict_v20240407.txt`` (Apache-2.0): 65k uncategorised terms;
* ``moderation/data/lexicons/curated/``: our own ``core.tsv`` (hand-written terms), ``drop.txt`` (ordinary words
  removed by hand) and ``allow.txt`` (the default allow-list, copied as is);
* optionally COLD's *train* split (``--cold-train``): a term that fires mostly on rows labelled harmless is
  dropped. COLD *dev* is never read here, so the false-positive rate measured on it stays honest.

Outputs in ``moderation/data/lexicons/``:

* ``default.tsv``: the curated default (``term<TAB>category<TAB>severity<TAB>source``);
* ``extended.tsv``: every term of both lists (≥ 60k), categorised by keyword rules, severity ``review``
  except where the theme file says otherwise. Used by the benchmark and available to an organisation that
  wants a strict screen; far too noisy as a default;
* ``allow.txt``; ``sound.txt`` (core terms also matched by sound) and ``common_bigrams.txt`` (jieba's common
  two-character words, which veto a sound-alike match that is really part of a word); ``VERSION`` (a content
  hash that goes into every verdict's ``lexicon_version``).

Curation of ``default.tsv``, in order: keep a term from a themed file or one that a keyword rule places with
confidence; normalise it with the same normaliser as the text; drop single characters, short Latin strings and
pure numbers (they fire inside ordinary words and numbers); drop words that jieba's dictionary lists as common
(frequency ≥ 300) or as a person, place or organisation name (leaders' names and 共产党 appear in every union
news item); drop terms that fire on COLD-train harmless rows more often than on offensive ones; drop ``drop.txt``.
``core.tsv`` terms are kept regardless.
"""

from __future__ import annotations

import csv
import hashlib
import re
import sys
from collections import Counter
from pathlib import Path

import typer

from moderation.normalize import normalize_term
from moderation.types import CATEGORIES, LexiconError

DATA_DIR = Path(__file__).parent / "data" / "lexicons"
CURATED_DIR = DATA_DIR / "curated"
DEFAULT_SOURCE = Path(__file__).resolve().parents[2] / "shared" / "lexicons"
DEFAULT_COLD = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "COLD" / "train.csv"

# konsheng files by theme -> (category, severity). Files not listed are mixed bags: their terms enter the
# default only through the keyword rules below.
THEMED: dict[str, tuple[str, str]] = {
    "政治类型.txt": ("politics", "review"),
    "反动词库.txt": ("politics", "block"),
    "贪腐词库.txt": ("politics", "review"),
    "暴恐词库.txt": ("politics", "review"),  # mostly cult names (法轮功...), politically sensitive in China
    "涉枪涉爆.txt": ("violence", "block"),
    "色情类型.txt": ("porn", "block"),
    "色情词库.txt": ("porn", "block"),
    "广告类型.txt": ("ads", "review"),
    "非法网址.txt": ("ads", "review"),
}
MIXED = [
    "GFW补充词库.txt",
    "网易前端过滤敏感词库.txt",
    "零时-Tencent.txt",
    "补充词库.txt",
    "民生词库.txt",
    "其他词库.txt",
]

# Keyword rules for uncategorised terms: (category, severity, pattern). First match wins. Strong patterns only:
# a term that matches none stays out of the default (it still goes to extended.tsv as politics/review, the
# dominant theme of the mixed lists).
RULES: list[tuple[str, str, re.Pattern[str]]] = [
    # Mild profanity first: the porn files hold 卧槽/真他妈, which are swearing, not pornography.
    # Plain insults there (白痴, 混蛋) are abuse too.
    (
        "abuse",
        "review",
        re.compile(r"^(真|去|我|卧)?(他妈|槽|操)(的)?$|^卧槽|^(白痴|混蛋|脑残|智障|弱智|人渣|畜生|贱人|蠢货)$"),
    ),
    (
        "porn",
        "block",
        re.compile(
            r"色情|淫|奸|屄|肏|[插操干舔]逼|阴道|阴茎|阴唇|阴蒂|性交|做爱|口交|肛交|乳交|足交|av|a片|毛片|黄片|成人(电影|视频|网|片|小说|图)"
            r"|裸聊|裸照|援交|嫖|妓|鸡巴|射精|自慰|手淫|潮吹|乱伦|轮奸|兽交|女优|巨乳|爆乳|骚[逼穴货]|[肉美嫩]穴|约炮|一夜情|包夜|楼凤|情色|春药|催情"
        ),
    ),
    (
        "gambling",
        "block",
        re.compile(
            r"赌|博彩|六合彩|百家乐|老虎机|时时彩|投注|真人娱乐|娱乐城|菠菜|特码|买马|北京赛车|彩金|21点|轮盘|德州扑克"
        ),
    ),
    (
        "fraud",
        "block",
        re.compile(
            r"诈骗|办证|假证|假钞|假币|代开|发票|套现|洗钱|刷单|裸贷|传销|代考|替考|枪手|作弊器|答案|窃听|监听|针孔|改号|伪基站|盗号"
            r"|木马|钓鱼网|私服|外挂|身份证(出售|买卖|号码)|银行卡(出售|买卖)|文凭|刻章|贷款|中奖"
        ),
    ),
    (
        "violence",
        "block",
        re.compile(
            r"枪|弹药|子弹|炸药|炸弹|雷管|火药|爆炸物|燃烧弹|原子弹|手雷|恐怖|圣战|基地组织|isis|劫持|绑架|砍人|杀人|灭门"
            r"|毒品|海洛因|冰毒|摇头丸|大麻|k粉|麻古|可卡因|氯胺酮|迷药|迷幻药|三唑仑|蒙汗药|麻醉"
        ),
    ),
    ("ads", "review", re.compile(r"微信|qq|加v|vx|代购|网赚|日赚|加群|www\.|\.com|\.cn|\.net|http")),
    (
        "abuse",
        "block",
        re.compile(
            r"操你|干你|日你|傻逼|傻屌|妈的|狗日|婊|贱人|贱货|杂种|王八蛋|死全家|你妈|他妈|黑鬼|支那|倭寇|基佬|娘炮"
        ),
    ),
    (
        "politics",
        "review",
        re.compile(
            r"法轮|李洪志|大法弟子|六四|八九|天安门(事件|屠杀|母亲)|藏独|台独|疆独|港独|东突|民运|反共|共匪|中共(暴政|邪党|恶党)|邪党|退党|九评"
            r"|真善忍|达赖|热比娅|刘晓波|零八宪章|08宪章|打倒|推翻|暴政|独裁"
        ),
    ),
]

_LATIN_OR_DIGITS = re.compile(r"^[a-z0-9 .\-_]+$")
_DIGITS = re.compile(r"^[0-9 .\-]+$")
_CJK = re.compile(r"[\u3400-\u9fff]")
# Severity words: a violence term that sells or teaches is blocked, a bare weapon name goes to review.
_TRADE = re.compile(r"出售|销售|供应|买卖|购买|求购|订购|提供|制作|制造|配方|自制|到货|出货|转让|批发|电话|qq|微信")


def read_lines(path: Path) -> list[str]:
    """Non-empty, non-comment lines of a UTF-8 text file (BOM tolerated)."""
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def read_core(path: Path) -> list[tuple[str, str, str]]:
    """Parse ``core.tsv``: ``term<TAB>category<TAB>severity``."""
    out: list[tuple[str, str, str]] = []
    for n, line in enumerate(read_lines(path), 1):
        parts = line.split("\t")
        if len(parts) != 3 or parts[1] not in CATEGORIES or parts[2] not in ("block", "review"):
            raise LexiconError(f"{path}:{n}: expected term<TAB>category<TAB>severity, got {line!r}")
        out.append((parts[0], parts[1], parts[2]))
    return out


def jieba_dictionary() -> dict[str, tuple[int, str]]:
    """jieba's bundled dictionary as word -> (frequency, part of speech)."""
    import jieba

    path = Path(jieba.__file__).parent / "dict.txt"
    out: dict[str, tuple[int, str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split(" ")
        if len(parts) >= 2:
            out[parts[0]] = (int(parts[1]), parts[2] if len(parts) > 2 else "")
    return out


def categorise(term: str) -> tuple[str, str] | None:
    """(category, severity) from the keyword rules, or ``None``."""
    for category, severity, pattern in RULES:
        if pattern.search(term):
            if category == "violence" and not _TRADE.search(term):
                return category, "review"
            return category, severity
    return None


def cold_noise(terms: set[str], cold_train: Path) -> dict[str, tuple[int, int]]:
    """term -> (harmless rows hit, offensive rows hit) on COLD train, for the terms that fire at all."""
    import ahocorasick

    auto = ahocorasick.Automaton()
    for t in terms:
        auto.add_word(t, t)
    auto.make_automaton()
    counts: dict[str, list[int]] = {}
    with cold_train.open(encoding="utf-8-sig", newline="") as fh:
        for row in csv.DictReader(fh):
            label = 1 if row["label"].strip() == "1" else 0
            seen = {t for _, t in auto.iter(normalize_term(row["TEXT"]))}
            for t in seen:
                counts.setdefault(t, [0, 0])[label] += 1
    return {t: (c[0], c[1]) for t, c in counts.items()}


def build(source: Path, cold_train: Path | None, out_dir: Path) -> dict[str, int]:
    """Build every output file; returns counts for the report."""
    if not source.is_dir():
        raise LexiconError(f"lexicon source folder not found: {source}")
    kon = source / "konsheng-sensitive-lexicon"
    houbb = source / "houbb-sensitive-word" / "dict_v20240407.txt"
    core = read_core(CURATED_DIR / "core.tsv")
    drop = {normalize_term(t) for t in read_lines(CURATED_DIR / "drop.txt")}
    jdict = jieba_dictionary()

    # term -> (category, severity, source); first writer wins, core first.
    default: dict[str, tuple[str, str, str]] = {}
    extended: dict[str, tuple[str, str, str]] = {}
    core_terms: set[str] = set()
    for term, cat, sev in core:
        t = normalize_term(term)
        default[t] = (cat, sev, "core")
        extended[t] = (cat, sev, "core")
        core_terms.add(t)

    candidates: dict[str, tuple[str, str, str]] = {}
    for name, (cat, sev) in THEMED.items():
        for raw in read_lines(kon / name):
            t = normalize_term(raw)
            if not t:
                continue
            rule = categorise(t)
            # A rule overrides the theme for mixed themes (广告类型 holds porn words too).
            c, s = rule if rule and (name in ("广告类型.txt", "暴恐词库.txt") or rule[0] == "abuse") else (cat, sev)
            if c == "violence" and not _TRADE.search(t):
                s = "review"
            candidates.setdefault(t, (c, s, "konsheng"))
            extended.setdefault(t, (c, s, "konsheng"))
    mixed_sources = [(kon / n, "konsheng") for n in MIXED] + [(houbb, "houbb")]
    for path, src in mixed_sources:
        for raw in read_lines(path):
            t = normalize_term(raw)
            if not t:
                continue
            rule = categorise(t)
            if rule:
                candidates.setdefault(t, (rule[0], rule[1], src))
            extended.setdefault(t, (*(rule or ("politics", "review")), src))

    dropped: Counter[str] = Counter()
    kept: dict[str, tuple[str, str, str]] = {}
    for t, val in candidates.items():
        if t in core_terms:
            continue
        reason = None
        if t in drop:
            reason = "hand"
        elif len(t) < 2:
            reason = "short"
        elif _DIGITS.match(t):
            reason = "number"
        elif _LATIN_OR_DIGITS.match(t) and len(t) < 5 and val[0] != "ads":
            reason = "short-latin"
        elif not _CJK.search(t) and not _LATIN_OR_DIGITS.match(t):
            reason = "symbols"
        elif t in jdict and jdict[t][0] >= 300:
            reason = "common-word"
        elif t in jdict and jdict[t][1] in ("nr", "nrfg", "nrt", "ns", "nt") and val[0] == "politics":
            reason = "name"
        elif val[0] == "politics" and (len(t) <= 2 or not _CJK.search(t)):
            # Two-character political fragments (藏西, 入联) sit inside ordinary phrases (西藏西部); Latin
            # ones are mostly site names (youtube). Core terms cover what must be caught.
            reason = "short-politics"
        if reason:
            dropped[reason] += 1
            continue
        cat, sev, src = val
        # Two characters are too little context to block on: such porn/fraud words (性爱, 假钞) go to review,
        # and so do political terms that do not call for overthrow (blocking is for 打倒/推翻-type slogans).
        if sev == "block" and (
            (cat in ("porn", "fraud", "violence") and len(t) <= 2)
            or (cat == "politics" and not re.search(r"打倒|推翻|灭亡|下台|邪党|共匪|暴政", t))
        ):
            sev = "review"
        kept[t] = (cat, sev, src)
    if cold_train and cold_train.is_file():
        noise = cold_noise(set(kept), cold_train)
        for t, (harmless, offensive) in noise.items():
            # Keep only terms whose hits on COLD train are mostly offensive rows.
            if harmless >= 1 and harmless >= offensive:
                kept.pop(t, None)
                dropped["cold-train"] += 1
    default.update(kept)

    allow = read_lines(CURATED_DIR / "allow.txt")
    out_dir.mkdir(parents=True, exist_ok=True)
    write_tsv(out_dir / "default.tsv", default)
    write_tsv(out_dir / "extended.tsv", extended)
    (out_dir / "allow.txt").write_text(
        "# Default allow-list (generated from curated/allow.txt by moderation.build_lexicon).\n"
        + "\n".join(allow)
        + "\n",
        encoding="utf-8",
    )
    sound = sound_alike_terms(core, jdict)
    (out_dir / "sound.txt").write_text(
        "# Core terms also matched by sound (沙币 for 傻逼), as review. Generated by moderation.build_lexicon: core\n"
        "# terms of these categories whose toneless pinyin is not that of a common word in jieba's dictionary.\n"
        + "\n".join(sound)
        + "\n",
        encoding="utf-8",
    )
    # Two-character words of jieba's dictionary (frequency >= 50): a sound-alike match whose first or last
    # character forms such a word with its neighbour is part of an ordinary word (啥比较 is not 傻逼).
    bigrams = sorted(w for w, (freq, _) in jdict.items() if len(w) == 2 and freq >= 50 and _CJK.search(w))
    (out_dir / "common_bigrams.txt").write_text(
        "# Two-character words with frequency >= 50 in jieba's dictionary (MIT); see ATTRIBUTION.md.\n"
        + "\n".join(bigrams)
        + "\n",
        encoding="utf-8",
    )
    digest = hashlib.sha256()
    for name in ("default.tsv", "extended.tsv", "allow.txt", "sound.txt", "common_bigrams.txt"):
        digest.update((out_dir / name).read_bytes())
    version = f"builtin-{digest.hexdigest()[:12]}"
    (out_dir / "VERSION").write_text(version + "\n", encoding="utf-8")
    stats = {
        "default": len(default),
        "extended": len(extended),
        "allow": len(allow),
        "sound": len(sound),
        **dict(dropped),
    }
    for cat in CATEGORIES:
        stats[f"default.{cat}"] = sum(1 for v in default.values() if v[0] == cat)
    return stats


# Not politics: its core terms include a person's name (李洪志), and names have many real homophones.
SOUND_CATEGORIES = ("abuse", "porn", "gambling")
# Terms whose sound-alikes are ordinary words or phrases jieba's list does not hold (财金 for 彩金, 你骂的 for 你妈的).
SOUND_EXCLUDED = frozenset({"彩金", "你妈的"})


def sound_alike_terms(core: list[tuple[str, str, str]], jdict: dict[str, tuple[int, str]]) -> list[str]:
    """Core terms safe to match by sound: CJK only, 2+ characters, 5+ pinyin letters, and no common word
    (jieba frequency >= 20) that is pronounced the same — 操你 sounds like 草拟 (to draft) and is left out."""
    from moderation.normalize import term_pinyin

    common: set[str] = set()
    for word, (freq, _) in jdict.items():
        if freq >= 20 and 2 <= len(word) <= 5 and _CJK.search(word):
            py = term_pinyin(normalize_term(word))
            if py:
                common.add(py)
    out: list[str] = []
    for term, category, _ in core:
        t = normalize_term(term)
        if category not in SOUND_CATEGORIES or t in SOUND_EXCLUDED or len(t) < 2 or not all(_CJK.match(c) for c in t):
            continue
        py = term_pinyin(t)
        if py and len(py) >= 5 and py not in common:
            out.append(t)
    return sorted(set(out))


def write_tsv(path: Path, entries: dict[str, tuple[str, str, str]]) -> None:
    """Write ``term<TAB>category<TAB>severity<TAB>source`` sorted by category then term (stable diffs)."""
    lines = ["# term\tcategory\tseverity\tsource  (generated by python -m moderation.build_lexicon)"]
    for term, (cat, sev, src) in sorted(entries.items(), key=lambda kv: (kv[1][0], kv[0])):
        if "\t" in term or "\n" in term:
            continue
        lines.append(f"{term}\t{cat}\t{sev}\t{src}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(
    source: Path = typer.Option(DEFAULT_SOURCE, help="Folder holding the third-party lexicon folders."),
    cold_train: Path = typer.Option(DEFAULT_COLD, help="COLD train.csv for the noise filter ('' to skip)."),
    out: Path = typer.Option(DATA_DIR, help="Output folder."),
) -> None:
    """Rebuild default.tsv, extended.tsv, allow.txt and VERSION."""
    try:
        stats = build(source, cold_train if str(cold_train) else None, out)
    except LexiconError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    for k, v in stats.items():
        typer.echo(f"{k}\t{v}")


if __name__ == "__main__":
    sys.exit(typer.run(main))
