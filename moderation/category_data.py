"""Team-written training and test data for the categories without a public data set: ``python -m
moderation.category_data --write`` rewrites the held-out set ``data/team_categories.tsv``.

Why: the lexicon-derived sentences of :mod:`moderation.dataset` put a listed *term* into a handful of templates,
so a model learns the terms. Real spam is written in ordinary words that no lexicon lists ("日结300，手机就能做，
加我V了解", "稳赚不赔的计划，带你上岸", "同城约，看头像", "内部渠道，低价代开发票"). This module holds
*template families* written here by the team for gambling, porn, fraud, ads (traffic diversion, 刷单, 代发,
兼职日结, 代开发票, 贷款, 办证…), violence and politics, and hard negatives on the same topics (police
warnings about fraud, news of gambling crackdowns, a union's own job ads and welfare notices, health articles,
matchmaking events, sports news), so that context, not a word, decides.

A family is a few slot pools (hook, offer, condition, contact, …); a text picks one phrase per slot, fills
random numbers / ids / cities, and a paraphrase step varies the surface (spellings of 微信 / 私聊 / 加, emoji,
punctuation, clause order where the family allows it). Every family is either **train** (its texts go to the
train split, a stable tenth of them to the model-selection slice) or **held out**: its texts never reach
training or selection and make the *team category set* (``moderation/data/team_categories.tsv``, written by
``--write``, read by ``moderation.evaluate``). Held-out families were written with their own phrase pools;
only the random fillers (ids, numbers, cities, emoji) and the paraphrase step are shared with the train
families, so the team set measures templates the model never saw, written by the same people. Train families
also get a spelling step of their own (:data:`_TRAIN_VARIANTS`: 进裙, 搞钱, jz…), which leaves the held-out
texts exactly as written. The second round of families (2026-12-03: more 刷单 / 兼职日结 / 代发 / 引流 / 博彩 /
色情引流 / 诈骗 scripts, and hard negatives that use the same words legitimately) is all train; the model card
lists each with its provenance.

Labels follow the issue's taxonomy: 刷单 and 代开发票 are illicit ads *and* fraud (both labels); 兼职日结, 代发,
贷款 and traffic diversion are ads; deception scripts (impersonation, fake refunds, investment, fake
subsidies) are fraud; 稳赚/上岸/带单 betting pitches are gambling.

Errors: :class:`moderation.dataset.DatasetError` for a malformed team set file.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import jieba

from moderation.dataset import DEFAULT_DATA_ROOT, MODEL_CATEGORIES, DatasetError, Example
from moderation.dataset import all_examples as dataset_examples

__all__ = [
    "FAMILIES",
    "TEAM_SET_FILE",
    "Family",
    "all_examples",
    "category_examples",
    "disguise_keywords",
    "family_texts",
    "load_team_set",
    "write_team_set",
]

TEAM_SET_FILE = Path(__file__).parent / "data" / "team_categories.tsv"
SEED = 20261202
TRAIN_PER_FAMILY = 160
TEST_PER_FAMILY = 60


@dataclass(frozen=True)
class Family:
    """A template family: ``slots`` are phrase pools joined in order (``""`` in a pool makes the slot
    optional); ``labels`` are the model categories of every text (empty: a hard negative)."""

    name: str
    labels: tuple[str, ...]
    slots: tuple[tuple[str, ...], ...]
    held_out: bool = False
    shuffle: bool = False  # the clauses read naturally in any order (spam usually does)


def _f(name: str, labels: str, *slots: str, held_out: bool = False, shuffle: bool = False) -> Family:
    """A family from ``|``-separated slot strings (compact to write, easy to read)."""
    return Family(
        name, tuple(labels.split()) if labels else (), tuple(tuple(s.split("|")) for s in slots), held_out, shuffle
    )


# ----------------------------------------------------------------------------------------------------
# Families. Held-out ones are marked; see the module docstring for what is shared.
# ----------------------------------------------------------------------------------------------------

FAMILIES: tuple[Family, ...] = (
    # --- gambling -------------------------------------------------------------------------------------
    _f(
        "gambling/plan-group",
        "gambling",
        "稳赚不赔的计划|今天的计划又全中了|导师带单，跟着走就行|老师的计划准得离谱|已经连红{n}期了|专业团队出计划",
        "带你上岸|回血不是梦|亏了的都能赚回来|本金{money}起步|一天翻一倍不难|让你少走弯路",
        "进群看计划|想跟的私我|主页有群号|评论扣666拉你进群|加{wx}进群|名额有限先到先得",
        shuffle=True,
    ),
    _f(
        "gambling/register-bonus",
        "gambling",
        "新平台上线|老平台信誉第一|正规大平台|官方直营平台|亚洲大平台",
        "注册就送{n}8|首充{money}送{money2}|每日签到领彩金|充多少送多少|新人首存翻倍",
        "提款秒到|大额无忧出款|24小时出款|不限IP不限设备|无需实名",
        "链接{url}|戳主页链接|复制网址到浏览器打开 {url}|下载app注册即可|",
    ),
    _f(
        "gambling/sports-bet",
        "gambling",
        "今晚{team}对{team}|欧冠焦点战|英超这场|世界杯预选赛|NBA今天这场",
        "稳胆推荐|让球盘必红|大小球内部消息|我已经下了{money}|主任推荐的单",
        "跟投的来|赔率1赔{n}|私聊拿单|跟我买稳赚|输了包赔",
        shuffle=True,
    ),
    _f(
        "gambling/card-room",
        "gambling",
        "玩斗地主也能赚钱|捕鱼游戏上下分秒到|炸金花牛牛二十四小时有局|麻将群{money}一局|手机棋牌真钱玩",
        "赢了直接提现到卡|上分找群主|微信群红包扫雷|满{n}人开局|输赢当场结算",
        "想玩的加我|拉你进群|私聊上分|{wx}|",
    ),
    _f(
        "gambling/win-boast",
        "gambling",
        "昨天{n}把赢了{money}|这个月靠它赚了{money}|上周刚提现{money}|今天又出款{money}了|一晚上翻了{n}倍",
        "平台很稳|从来没被黑过|比上班强多了|小本金也能玩",
        "想玩的问我要链接|需要的私信|兄弟们冲|截图为证",
        shuffle=True,
    ),
    _f(
        "gambling/lottery-tips",
        "gambling",
        "幸运飞艇|北京赛车|时时彩|PC蛋蛋|快三|极速赛车",
        "精准单双推荐|一期一期跟着下|倍投法稳赢|每天稳赚{money}|独家杀号公式",
        "跟单请扫码|老师免费带|包你不亏|错一期赔一期",
        held_out=True,
    ),
    _f(
        "gambling/live-casino",
        "gambling",
        "真人百家乐|线上娱乐场|澳门官方授权网站|皇家娱乐城",
        "美女荷官在线发牌|龙虎斗公平公正|轮盘骰宝应有尽有|真人视讯全天开桌",
        "下载APP注册送彩金|会员专享返水|邀请好友得佣金",
        held_out=True,
        shuffle=True,
    ),
    _f(
        "gambling/recovery-pitch",
        "gambling",
        "输了的兄弟别放弃|欠了网贷想翻身的看过来|想一把回本的|输光了工资的朋友",
        "我有办法让你回血|平台有漏洞可以稳赢|跟着我打一个月就上岸了|找对方法一天就能回本",
        "私信我|加我详聊|别错过这次机会",
        held_out=True,
    ),
    # --- porn -----------------------------------------------------------------------------------------
    _f(
        "porn/local-hookup",
        "porn",
        "同城约|附近寂寞的男士|本地妹子|同城交友，今晚有空|附近的人看过来",
        "看头像|看我签名|资料卡有惊喜|照片本人|懂的来",
        "私聊|加我|见面再说|{wx}|",
        shuffle=True,
    ),
    _f(
        "porn/home-service",
        "porn",
        "上门服务|酒店空降|全套服务|按摩全套|快餐包夜都可以",
        "学生兼职|少妇|模特身材|年轻漂亮",
        "{money}一次，包夜{money2}|可先视频验证|不满意不收费|安全卫生",
        "联系{wx}|电话联系|私聊价格",
        shuffle=True,
    ),
    _f(
        "porn/video-resource",
        "porn",
        "午夜福利视频|私密资源|老司机发车了|成人小电影|偷拍合集",
        "无删减完整版|{n}部打包|高清不卡|每天更新",
        "评论区扣1发你|网盘链接私发|关注后私信领取|看主页",
        shuffle=True,
    ),
    _f(
        "porn/explicit-chat",
        "porn",
        "今晚想要了|好想和你睡一晚|身材超好的小姐姐陪你|一个人在家好无聊",
        "什么姿势都可以|只穿了内衣|来我房间|让你舒服",
        "快来找我|私我|你懂的",
    ),
    _f(
        "porn/nude-chat",
        "porn",
        "寂寞吗|一个人睡不着|晚上无聊的哥哥",
        "视频裸聊|陪你聊到天亮，什么都可以看|开视频给你看|私密视频一对一",
        "{money}元一小时|加我|先付后看",
        held_out=True,
    ),
    _f(
        "porn/escort",
        "porn",
        "外围|高端商务伴游|嫩模|网红女主播",
        "全国空降|照片真实无PS|可包月|陪吃陪玩陪睡",
        "价格私聊|预约从速|诚意者联系",
        held_out=True,
        shuffle=True,
    ),
    # --- fraud ----------------------------------------------------------------------------------------
    _f(
        "fraud/impersonate-police",
        "fraud",
        "您好，这里是{city}公安局|我是{city}市刑警大队的民警|这里是最高检察院|我们是网警",
        "您的身份证涉嫌一起洗钱案件|您名下的银行卡涉嫌诈骗|有人用您的信息办理了非法业务",
        "需要把资金转到安全账户接受审查|请不要告诉任何人，配合调查|否则将冻结您的全部财产|现在下载这个软件做笔录",
    ),
    _f(
        "fraud/refund-service",
        "fraud",
        "您好，我是淘宝客服|您购买的商品有质量问题|您的快递在运输中丢失了|我是京东售后",
        "我们给您双倍退款|将为您理赔{money}元|需要为您办理退款",
        "请下载会议软件共享屏幕|把收到的验证码发给我|需要先开通备用金|请在支付宝借呗里操作一下",
    ),
    _f(
        "fraud/investment",
        "fraud",
        "内部消息，这个币下周必涨{n}倍|导师带你投资数字货币|跟着老师炒股稳赚|海外项目高额回报",
        "保本保收益|年化收益{pct}%|一个月回本|零风险",
        "先交{money}入会费|名额只剩{n}个|下载我们的app操作|加{wx}进投资群",
        shuffle=True,
    ),
    _f(
        "fraud/acquaintance",
        "fraud",
        "我是你领导，换新号了|老同学，我换号了|妈，我手机坏了，这是新号|我是{name}，存一下新号码",
        "急用钱，先借{money}|帮我给这个账户转一下|明天开会要交押金|我在外地出了点事",
        "明天还你|别打电话，不方便|转好了截图给我",
    ),
    _f(
        "fraud/prize",
        "fraud",
        "恭喜您被抽中为幸运用户|您获得本台节目二等奖|恭喜您的手机号中奖了",
        "奖金{money}元|价值{money}元的手机一部|笔记本电脑一台",
        "先交个人所得税{money2}元即可领取|请点击{url}填写领奖信息|先付邮费{n}元",
    ),
    _f(
        "fraud/trade-deposit",
        "fraud",
        "低价出售游戏账号|演唱会门票内部渠道|二手手机九成新|低价转让名牌包",
        "价格好商量|比官方便宜一半|只剩最后一个",
        "先付定金{money}|不走平台交易|加微信直接转账",
        shuffle=True,
    ),
    _f(
        "fraud/fake-subsidy",
        "fraud",
        "工会福利补贴发放通知|人社局职业技能补贴开始申领|{year}年社保补贴到账提醒|个税退税通知",
        "请点击链接{url}填写银行卡号和密码|核验身份后{n}小时内到账|扫描二维码登记领取",
        "逾期视为自动放弃|名额有限|今天是最后一天",
        held_out=True,
    ),
    _f(
        "fraud/loan-unlock",
        "fraud",
        "您的贷款已审批通过|您的额度{money}元已到账|恭喜借款成功",
        "因银行卡号填错被冻结|需要先交{money2}元解冻金|流水不够要先刷流水|需缴纳保证金",
        "交了立刻放款|不交视为违约，影响征信",
        held_out=True,
    ),
    _f(
        "fraud/romance",
        "fraud",
        "认识你很开心，我在国外做生意|宝贝，我舅舅在平台内部工作|我们一起为将来存点钱吧",
        "这个平台有漏洞稳赚|带你一起投一点|我已经赚了{money}了",
        "你先充{money2}试试|别告诉家里人|等赚到钱我们就结婚",
        held_out=True,
    ),
    # --- ads (illicit advertising and traffic diversion) ----------------------------------------------
    _f(
        "ads/daily-pay",
        "ads",
        "日结{money}|手机就能做|宝妈学生党都可以|一部手机在家赚钱|每天花一两个小时",
        "时间自由|不收任何费用|多劳多得|当天结算",
        "加我V了解|私我|主页联系|想做的扣1|加{wx}",
        shuffle=True,
    ),
    _f(
        "ads/brushing",
        "ads fraud",
        "淘宝刷单|抖音点赞员|关注点赞就有钱|刷好评",
        "一单{n}元|做一单结一单|佣金秒返|垫付后本金加佣金返还",
        "有意者加{wx}|私聊|扫码进群",
        shuffle=True,
    ),
    _f(
        "ads/diversion",
        "ads",
        "好物分享|想了解的|更多内容|详细教程",
        "加{wx}|+V：{wx}|主页有联系方式|扫码进群|评论区不方便说，私我|看简介",
        "免费送|限时福利|",
        shuffle=True,
    ),
    _f(
        "ads/loan",
        "ads",
        "无视黑白户|不看征信|秒批秒到|无抵押",
        "急用钱的找我|大额小额都能做|身份证就能贷|学生也能借",
        "{wx}|私聊|联系{qq}",
        shuffle=True,
    ),
    _f(
        "ads/accounts-fans",
        "ads",
        "出售微博账号|涨粉{n}万|刷阅读量播放量|公众号买粉|直播间刷人气",
        "真人粉不掉|价格最低|秒到账",
        "需要的私信|联系{qq}|{wx}",
    ),
    _f(
        "ads/counterfeit",
        "ads",
        "高仿名牌包|一比一复刻手表|减肥药一周瘦{n}斤|增高药",
        "质量跟专柜一样|不反弹|效果看得见",
        "微商价|代理拿货更便宜|加{wx}看实拍",
        shuffle=True,
    ),
    _f(
        "ads/invoice",
        "ads fraud",
        "内部渠道|正规票|财务朋友看过来",
        "低价代开发票|各类增值税发票|点数低|专票普票都能开",
        "可验真|联系{qq}|加{wx}",
        held_out=True,
        shuffle=True,
    ),
    _f(
        "ads/posting-service",
        "ads",
        "代发帖子|代发快递空包|代发朋友圈广告|代发各大论坛",
        "价格实惠|当天发|批量发|全网覆盖",
        "需要的滴滴我|主页有联系方式|私信报价",
        held_out=True,
    ),
    _f(
        "ads/documents",
        "ads",
        "代考四六级|办理各类证件|学历证书可查|驾照不用考",
        "包过|加急当天出|全国可办",
        "联系{qq}|私我|{wx}",
        held_out=True,
        shuffle=True,
    ),
    # --- violence -------------------------------------------------------------------------------------
    _f(
        "violence/threat",
        "violence",
        "再让我看见你|你等着|别让我在{city}碰到你|敢再说一句",
        "我弄死你|找人废了你|砍死你全家|打断你的腿|让你横着出去",
        "说到做到|走着瞧|",
    ),
    _f(
        "violence/weapon-sale",
        "violence",
        "出售仿真枪|弩箭|管制刀具|气枪",
        "威力大|可打钢珠|穿透力强",
        "快递发货|隐蔽包装|私聊价格",
        shuffle=True,
    ),
    _f(
        "violence/glorify",
        "violence",
        "那个砍人的|报复社会的那个人|开车撞人的",
        "真是英雄|干得漂亮|早就该这么干了",
        "我也想这么做|支持他",
    ),
    _f(
        "violence/instructions",
        "violence",
        "教你自制炸药|燃烧瓶的做法|怎么做土枪",
        "材料网上都能买到|步骤很简单|一看就会",
        "视频教程私发|想学的留言",
        held_out=True,
    ),
    _f(
        "violence/incite",
        "violence",
        "大家一起去把他家砸了|见一个打一个|今晚带上家伙",
        "往死里打|出了事我负责|一个都别放过",
        "人越多越好|集合地点私发",
        held_out=True,
    ),
    # --- politics -------------------------------------------------------------------------------------
    _f(
        "politics/gathering",
        "politics",
        "明天上午九点|周六上午|今晚八点",
        "大家一起到市政府门口|去广场集合|到省委门口静坐",
        "讨个说法|不给说法就不走|人越多越好",
        "转发扩散|让更多人知道|",
    ),
    _f(
        "politics/anti-state",
        "politics",
        "这个国家已经没救了|体制烂透了|共产党就是骗子",
        "别再被洗脑了|真相都被封锁了|迟早要完",
        "醒醒吧|大家都看清楚了",
        shuffle=True,
    ),
    _f(
        "politics/subvert",
        "politics",
        "推翻一党专政|结束独裁|改朝换代的时候到了",
        "大家团结起来|现在就行动|不要再忍了",
        "转发就是支持|",
    ),
    _f(
        "politics/overseas",
        "politics",
        "翻墙看看外面的报道|海外网站曝光了内幕|外媒都报道了",
        "国内都删了|速看，马上被删|官方一直在隐瞒",
        "赶紧保存|传出去",
        held_out=True,
    ),
    _f(
        "politics/separatism",
        "politics",
        "支持台独|新疆独立|西藏独立",
        "是大势所趋|人民有权自决|早晚的事",
        "支持的转发|",
        held_out=True,
    ),
    # ------------------------------------------------------------------------------------------------
    # Families added 2026-12-03 (issue 14 item 2, second round): more ways the same spam is written in
    # ordinary words, and hard negatives that use those words legitimately. All train families, written
    # here by the team; none reuses a phrase of a held-out family (see the model card, "Team families").
    # ------------------------------------------------------------------------------------------------
    # --- 博彩 ---
    _f(
        "gambling/app-invite",
        "gambling",
        "朋友推荐的一个小游戏|最近在玩一个手机游戏平台|同事带我玩的一个软件|我表哥在玩的那个app",
        "充一百能提三百|玩一把就能提现|赢的钱直接到支付宝|每天玩半小时多一份收入|下班无聊玩两把赚个零花钱",
        "提现几分钟到账|我已经提了{money}了|邀请码{n}{n}，注册填我的码有奖励|链接我发你|想玩的找我拿邀请码",
        shuffle=True,
    ),
    _f(
        "gambling/agent-recruit",
        "gambling",
        "平台招代理|诚招推广合伙人|招下级代理|寻找长期合作的代理",
        "下线每一笔流水都有你的分成|拉人进来就有返佣|零成本躺着收佣金|佣金日结，流水越大返得越多",
        "一个月轻松过万|不用自己投钱|带团队的来|详聊{wx}",
        shuffle=True,
    ),
    _f(
        "gambling/red-packet",
        "gambling",
        "抢红包群每晚八点开|红包接龙群招人|{money}元包的群缺人|发包抢包的群",
        "尾数是几就赔几倍|抢到最小的接着发|踩雷的赔{n}倍|群主担保，秒结",
        "人齐就开|进群发我|{wx}|拉你进去",
        shuffle=True,
    ),
    _f(
        "gambling/overseas-trip",
        "gambling",
        "西港娱乐场邀请您体验|东南亚豪华游，包机票食宿|马尼拉度假村贵宾厅",
        "落地送筹码{money}|洗码返佣|贵宾专属包厅|现场换码，赢了直接带走",
        "名额有限，私聊报名|联系客户经理{wx}|全程专人接送",
    ),
    _f(
        "gambling/slang-boast",
        "gambling",
        "兄弟们今晚又吃肉了|这波稳稳拿下|跟着老哥又上岸一次|昨晚一把回本还多赚了{money}",
        "下一场我先上车|明天还是老时间|不信的别跟，信的早就赚了|缺本金的我可以带",
        "想上车的扣1|私我拿口子|老规矩群里见",
        shuffle=True,
    ),
    # --- 色情引流 ---
    _f(
        "porn/profile-bait",
        "porn",
        "点我头像有你想看的|想看更多去我简介|私密相册已经开放|动态里有好东西",
        "尺度自己体会|只给懂的人看|删了就没了|晚上才更新",
        "男生勿进，除非你忍得住|找我拿链接|我的名字就是联系方式|",
        shuffle=True,
    ),
    _f(
        "porn/late-live",
        "porn",
        "深夜直播间开了|小姐姐今晚开播，只给粉丝看|这个app里的直播什么都能看|半夜的福利直播",
        "尺度很大|比电视上的刺激多了|可以一对一|刷礼物就能看更多",
        "房间号私发|下载地址在评论|{url}|关注我进群",
        shuffle=True,
    ),
    _f(
        "porn/spa-parlor",
        "porn",
        "新开的男士会所|养生馆新来了几个技师|足浴店有特殊项目|商务会所隐秘包间",
        "年轻技师服务到位|有你懂的那种服务|可以加钟做全套|不满意换人",
        "地址私聊|{city}同城可约|先加{wx}预约|熟客带新客有优惠",
        shuffle=True,
    ),
    _f(
        "porn/paid-photos",
        "porn",
        "私房照原图|不打码的写真套图|女友的私密照|她的付费内容",
        "一套{n}张只要{money}|付费解锁全部|从来没有外传过|比朋友圈的大胆多了",
        "要的私|付款后发网盘|扫码付款自动发货",
    ),
    # --- 诈骗 ---
    _f(
        "fraud/service-fee",
        "fraud",
        "您好，您开通的百万保障服务今天到期|您在平台开通了会员自动续费|您的账户被误设为代理商",
        "不关闭每个月会扣{money}元|会影响您的个人征信|需要在后台帮您注销",
        "请按我的提示打开手机银行|请把收到的验证码告诉我|下载这个软件我远程帮您操作|先把余额转到指定账户核实",
    ),
    _f(
        "fraud/fake-notice",
        "fraud",
        "【ETC】您的ETC认证已失效|【医保】您的医保卡存在异常|【积分】您的话费积分{n}分今天清零|【快递】您的包裹地址不详无法派送",
        "请点击{url}重新认证|登录{url}兑换礼品|请尽快点击链接处理|填写银行卡信息后恢复使用",
        "逾期将停止服务|回T退订|",
    ),
    _f(
        "fraud/job-deposit",
        "fraud",
        "入职前要先交{money}元培训费|做任务要先充值{money}|上岗前需要交服装押金|领工作资料先付{money}保证金",
        "干满一个月全额退|做完一单马上返还|这是公司规定|大家都交了",
        "今天交明天就能上班|交完拉你进工作群|转到财务的私人账户就行",
        shuffle=True,
    ),
    _f(
        "fraud/parent-group",
        "fraud",
        "各位家长好，我是班主任|家长请注意，学校通知|我是孩子的老师，{name}让我联系您|您孩子在学校突发急病",
        "本学期资料费每人{money}元|需要马上交手术押金{money}元|请扫这个码交费|把钱转到这个账户",
        "交完截图发我|不要在群里讨论|今天下午五点前|",
    ),
    _f(
        "fraud/sextortion",
        "fraud",
        "你和我视频的录像在我手上|你的隐私视频我已经保存了|你手机通讯录我都导出来了",
        "不想让你老婆同事看到|不给钱就发到你单位群里|我数到三就发出去",
        "转{money}元这事就算了|给钱删视频|别想着报警",
    ),
    _f(
        "fraud/card-rental",
        "ads fraud",
        "收购闲置银行卡|出租你的银行卡一天赚{money}|高价收电话卡|借你的支付宝账户走个流水",
        "不用你操作，躺着拿钱|一张卡一个月{money2}|当天结算|没有任何风险",
        "有卡的联系{qq}|私聊{wx}|老板直收，中间不赚差价",
        shuffle=True,
    ),
    # --- 刷单 / 兼职日结 ---
    _f(
        "ads/task-rebate",
        "ads fraud",
        "帮商家提升销量|拍下不发货的单|给店铺做任务|帮主播冲人气",
        "垫付{money}返{money2}|第一单不用垫钱|每单佣金{n}块|做完任务马上返",
        "名额不多，先到先得|进任务群领单|私我要派单员联系方式",
        shuffle=True,
    ),
    _f(
        "ads/home-work",
        "ads",
        "在家做手工活，计件结算|打字录入员，一单一结|在家抄写小说|居家客服，接单就有钱|看视频评论赚零花",
        "不用出门，下班也能做|上手快，无需经验|一天轻松{money}|宝爸宝妈都能做|不压工资，当天结清",
        "名额不多|要的扣1|加{wx}领任务|私聊报名|看我主页",
        shuffle=True,
    ),
    _f(
        "ads/jz-hourly",
        "ads",
        "兼职招人|jz急招|临时工招聘，薪资当天结|招兼职，学生优先",
        "时薪{n}元|日入{money}+|干一天结一天|手机操作，无门槛",
        "不收任何押金|+V详聊|滴滴报名|有意向的私",
        shuffle=True,
    ),
    # --- 代发 ---
    _f(
        "ads/bulk-send",
        "ads",
        "代发推广短信|群发到{n}个微信群|代发小红书种草笔记|代发外链和软文|代发好评晒图",
        "一条只要几分钱|包收录|不封号|量大价格更低|三天见效果",
        "需要的老板私聊|联系{qq}|加{wx}拿报价|",
        shuffle=True,
    ),
    _f(
        "ads/account-sale",
        "ads",
        "出售实名微信号|批发老号，可注册各平台|接码平台，秒收验证码|出各种平台的满月号",
        "稳定不掉线|包售后|批量有优惠",
        "{qq}|私聊下单|看简介",
        shuffle=True,
    ),
    # --- 引流加微信 ---
    _f(
        "ads/move-off-platform",
        "ads",
        "评论区不让发|这里说话不方便|平台限制发链接|私信回复不过来",
        "移步绿色软件|换个地方聊|点我名字看联系方式|咱们去V上说",
        "有你想要的|福利都在那边|来了就知道|{wx}",
        shuffle=True,
    ),
    _f(
        "ads/side-hustle",
        "ads",
        "免费领取副业资料|零基础学剪辑带你变现|一对一带做副业项目|宝妈副业月入过万",
        "前{n}名免费|不收一分钱学费|跟着做就有收入|已经带出几百个学员",
        "加我拉你进学习群|私我发资料|{wx}备注副业",
        shuffle=True,
    ),
    # --- hard negatives: the same words used legitimately ---
    _f(
        "neg/union-job-fair",
        "",
        "{city}总工会联合人社部门举办专场招聘会|职工之家就业服务专场|{date}举行农民工返岗招聘会",
        "现场提供{n}个岗位，涵盖技工、物流、家政|部分临时岗位按日结算工资，用工单位均经审核|为困难职工家庭提供优先推荐",
        "求职者请携带身份证和简历|也可扫描工会公众号二维码在线投递|咨询电话12351",
        "",
    ),
    _f(
        "neg/legal-aid",
        "",
        "工会法律援助中心为职工提供免费咨询|职工维权服务站律师每周三值班|欠薪、工伤认定和劳动合同纠纷可申请法律援助",
        "符合条件的职工可免费代理诉讼|咨询不收任何费用|可加入工会法律服务微信群留言|也可拨打12351职工服务热线",
        "请携带劳动合同等材料|地址：{city}职工服务中心二楼|",
    ),
    _f(
        "neg/anti-fraud-quote",
        "",
        "警惕！“日结三百、手机就能做”的兼职多是刷单骗局|要先交押金、培训费的兼职都是诈骗|不要出租出借银行卡和电话卡|网上“稳赚不赔”的投资平台大多是赌博|陌生人拉你加微信私聊投资，请提高警惕",
        "{city}已有{n}名职工上当|民警提醒，天上不会掉馅饼|工会提醒广大职工",
        "不轻信、不转账|发现线索请拨打110或96110|转发给身边的家人朋友",
        shuffle=True,
    ),
    _f(
        "neg/fraud-case-news",
        "",
        "{city}一女子接到自称客服的电话，被骗走{money}元|一男子轻信网上兼职刷单，损失{money}元|退休职工被冒充公检法诈骗，民警及时拦截",
        "骗子以退款为由让其下载软件|对方称先垫付后返佣金|民警赶到时对方仍在通话",
        "目前案件正在进一步侦办中|警方提醒市民提高防范意识|",
    ),
    _f(
        "neg/anti-porn-campaign",
        "",
        "{city}开展扫黄打非专项行动|网信部门清理涉黄低俗信息|公安机关查处一批违规娱乐场所",
        "查处涉黄场所{n}家|关闭违规直播间{n}个|净化未成年人网络环境",
        "欢迎群众举报|家长要关注孩子上网|",
    ),
    _f(
        "neg/union-account",
        "",
        "关注工会公众号，后台回复“入会”获取入会指南|扫描下方二维码加入职工书屋|添加工会小助手微信，领取职工普惠卡|点击阅读原文报名参加职工运动会",
        "全部免费|会员专享|工会经费保障，不收任何费用|名额{n}个",
        "有疑问请私信后台|欢迎转发|",
    ),
    _f(
        "neg/lottery-draw",
        "",
        "中国福利彩票双色球第{year}0{n}期开奖结果公布|体育彩票大乐透本期奖池累计{n}亿元|{city}彩民喜中大奖",
        "请理性购彩，量力而行|未成年人不得购买彩票|兑奖请携带身份证到指定地点",
        "",
    ),
    _f(
        "neg/everyday-chat",
        "",
        "同学会的照片我发你微信了|有事私聊我，我在开会|加我一下，把资料传给你|晚上一起吃饭吗|你的快递到了，放门口了|"
        "孩子的作业拍照发群里了|周末加班的同事私我报个名|表格我已经发到工作群了|下午三点的会改到明天了",
        "好的，收到|谢谢啦|明天见|辛苦了|我晚点回你|有空打个电话",
        "",
    ),
    _f(
        "neg/product-review",
        "",
        "这款电饭煲用了半年，挺好用|618买的洗衣机终于到了|分享一下我的减脂餐|楼下新开的理发店手艺不错",
        "性价比很高|就是声音有点大|推荐给大家|没有广告，纯个人体验",
        "",
    ),
    _f(
        "neg/legit-part-time",
        "",
        "大学生暑期社会实践岗位开放报名|社区招募周末志愿者|图书馆勤工助学岗位|{city}职工服务中心招募兼职讲解员",
        "签订协议，按月发放补贴|不收取任何费用|由学校统一组织|参加工伤保险",
        "报名请到社区服务站|详情见学校官网|",
    ),
    # --- hard negatives (no label) --------------------------------------------------------------------
    _f(
        "neg/gambling-crackdown",
        "",
        "{city}警方捣毁一个网络赌博团伙|公安机关破获跨境赌博案件，涉案金额{n}亿元|{city}开展打击网络赌博专项行动",
        "抓获犯罪嫌疑人{n}名|冻结涉案资金{n}千万元|关停赌博网站{n}个",
        "警方提醒：网络赌博十赌九骗，切勿参与|请市民积极举报赌博线索",
    ),
    _f(
        "neg/anti-fraud",
        "",
        "警方提醒|反诈中心提示|{city}公安温馨提示",
        "凡是要求转到安全账户的都是诈骗|刷单返利就是诈骗|自称客服要求共享屏幕的，一律是骗子|冒充领导借钱的请先电话核实",
        "请下载国家反诈中心APP|遇到可疑情况拨打96110|不听不信不转账",
    ),
    _f(
        "neg/union-jobs",
        "",
        "市总工会春风行动招聘会|{city}职工就业服务站|区总工会就业援助月",
        "{n}家企业提供岗位|提供技能培训和岗位推荐|免费为求职职工服务",
        "时间：{date}上午九点|地点：职工服务中心一楼|欢迎广大职工参加",
    ),
    _f(
        "neg/union-welfare",
        "",
        "关于开展春节送温暖活动的通知|金秋助学报名开始|职工疗休养安排|困难职工帮扶申请",
        "请各基层工会于{date}前报送名单|符合条件的会员可向所在单位工会申请|慰问品由工会统一发放",
        "详见附件|联系人：工会办公室|",
    ),
    _f(
        "neg/health",
        "",
        "女职工两癌筛查开始预约|乳腺增生要注意什么|青春期性教育讲座走进校园|预防艾滋病知识宣传",
        "专家建议定期体检|早发现早治疗|医生提醒注意作息",
        "名额有限请尽早报名|本期科普到此|",
    ),
    _f(
        "neg/film-game",
        "",
        "这部电影的枪战场面拍得很震撼|游戏里的爆炸特效做得很真实|武侠剧里的打斗设计很好看",
        "导演功力很深|剧情有点拖|演员很拼",
        "推荐大家去看|评分{n}分|",
    ),
    _f(
        "neg/official-news",
        "",
        "{city}召开{topic}工作会议|市委理论学习中心组开展集中学习|{org}党支部开展主题党日活动",
        "会议强调要抓好落实|传达学习有关文件精神|部署下一阶段重点任务",
        "各单位负责同志参加会议|",
    ),
    _f(
        "neg/shop-promo",
        "",
        "本店周末促销|新店开业|会员日活动",
        "全场八折|满{money}减{n}|第二件半价",
        "欢迎光临|地址在{city}中山路{n}号|",
    ),
    _f(
        "neg/workgroup",
        "",
        "请各单位联络员加入工作群|培训资料已发到群里|会议链接已发至工作群",
        "有问题在群里留言|请按时提交材料|收到请回复",
        "谢谢配合|",
    ),
    _f(
        "neg/invoice-howto",
        "",
        "电子发票怎么开|报销需要哪些发票|增值税专用发票和普通发票的区别",
        "税务局教你三步搞定|财务部提醒大家注意|在电子税务局就能办理",
        "收藏备用|",
    ),
    _f(
        "neg/chess-mahjong",
        "",
        "工会举办职工象棋比赛|退休职工麻将友谊赛|社区老年人扑克牌比赛",
        "不带彩头，重在参与|设一二三等奖|共有{n}支队伍参赛",
        "欢迎报名|",
    ),
    # held-out hard negatives
    _f(
        "neg/matchmaking",
        "",
        "市总工会单身青年联谊会报名开始|缘来是你，职工交友活动|青年职工相亲会",
        "面向单身职工|现场有破冰游戏|由工会组织，安全可靠",
        "请通过单位工会报名|名额{n}人|",
        held_out=True,
    ),
    _f(
        "neg/sports-news",
        "",
        "{team}主场{n}比{n}战胜{team}|体彩公益金资助{city}建成{n}个健身场地|世界杯小组赛今晚开打",
        "球迷热情高涨|比赛精彩激烈|主教练赛后表示满意",
        "下一轮将客场作战|",
        held_out=True,
    ),
    _f(
        "neg/legit-jobs",
        "",
        "区总工会招聘社会化工会工作者{n}名|市职工服务中心招聘窗口服务人员|工会招聘启事",
        "要求大专以上学历|签订劳动合同，缴纳五险一金|试用期三个月",
        "报名请登录官网|报名截止{date}|",
        held_out=True,
    ),
    _f(
        "neg/legit-loans",
        "",
        "人民银行推出普惠小微贷款|工会联合银行推出职工创业贷款|住房公积金贷款新政解读",
        "利率下调|贷款需通过银行正规渠道申请|可到银行网点咨询",
        "谨防假冒贷款诈骗|",
        held_out=True,
    ),
    _f(
        "neg/complaint-channel",
        "",
        "向12345热线反映小区停车难问题|通过信访渠道反映欠薪问题|职工可向工会法律援助中心求助",
        "工作人员已经回复|三天内给出处理意见|依法维权",
        "感谢有关部门|",
        held_out=True,
    ),
    _f(
        "neg/self-defense",
        "",
        "女职工防身术培训|社区开展防范暴力犯罪讲座|厨房刀具套装八折",
        "教练示范了几个实用动作|民警讲解了遇险时的应对方法|不锈钢材质耐用",
        "欢迎报名|",
        held_out=True,
    ),
)


# ----------------------------------------------------------------------------------------------------
# Filling and paraphrasing
# ----------------------------------------------------------------------------------------------------

_CITIES = "北京 上海 广州 深圳 成都 武汉 杭州 南京 西安 重庆 长沙 郑州 青岛 厦门 合肥 昆明 沈阳 济南".split()
_TEAMS = "皇马 巴萨 曼联 利物浦 拜仁 国米 尤文 切尔西 湖人 勇士 山东泰山 上海海港 北京国安".split()
_NAMES = "张总 王局 李主任 刘科长 陈经理 杨书记 赵姐 黄哥".split()
_ORGS = "市政府 教育局 统计局 卫健委 市科协 区文化馆 市总工会 团市委 交通运输局".split()
_TOPICS = "安全生产 乡村振兴 营商环境 科技创新 就业 防汛 职工服务 劳动保护".split()
_EMOJI = ["", "", "", "🔥", "💰", "👉", "✅", "❤️", "😘", "🎉", "‼️"]
_SEPS = ["，", "，", " ", "！", "。", "~", "、"]
# Common spellings of the same words in real posts; applied to every family (negatives too, so a spelling
# alone proves nothing).
_VARIANTS: dict[str, tuple[str, ...]] = {
    "微信": ("微信", "V信", "vx", "薇信", "威信", "wx", "绿泡泡"),
    "加我": ("加我", "+我", "➕我", "加一下"),
    "私聊": ("私聊", "私信", "私我", "滴滴"),
    "私我": ("私我", "私聊", "pm我", "滴滴我"),
    "联系": ("联系", "联络", "找"),
    "赚": ("赚", "挣"),
}


# Spellings spam uses to slip past word filters (裙 for 群, jz for 兼职), applied to the *train* families only,
# positives and negatives alike: the held-out set keeps the texts it was written with, and a spelling alone
# proves nothing.
_TRAIN_VARIANTS: dict[str, tuple[str, ...]] = {
    "进群": ("进群", "进裙", "进qun"),
    "赚钱": ("赚钱", "搞钱", "赚米"),
    "兼职": ("兼职", "jz", "兼z"),
    "链接": ("链接", "lian接", "链jie"),
    "提现": ("提现", "提xian", "体现"),
}


def _fill(template: str, rng: random.Random) -> str:
    money = rng.choice([100, 150, 200, 300, 500, 800, 1000, 2000, 5000])
    values = {
        "n": str(rng.choice([2, 3, 5, 8, 10, 12, 20, 30, 50, 88, 100])),
        "money": str(money),
        "money2": str(money * rng.choice([2, 3, 5])),
        "pct": str(rng.choice([15, 20, 30, 50, 80, 120])),
        "wx": rng.choice(["", "vx", "wx_", "V"])
        + "".join(rng.choices("abcdefghjkmnpqrstuvwxyz0123456789", k=rng.randint(6, 9))),
        "qq": str(rng.randint(10000000, 3999999999)),
        "url": "www."
        + "".join(rng.choices("abcdefghkmnpqrstuvwxyz", k=rng.randint(4, 7)))
        + rng.choice([".com", ".cc", ".vip", ".net", ".top"]),
        "city": rng.choice(_CITIES),
        "team": rng.choice(_TEAMS),
        "name": rng.choice(_NAMES),
        "org": rng.choice(_ORGS),
        "topic": rng.choice(_TOPICS),
        "year": str(rng.randint(2023, 2026)),
        "date": f"{rng.randint(1, 12)}月{rng.randint(1, 28)}日",
    }
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], template)


def _paraphrase(text: str, rng: random.Random) -> str:
    for word, options in _VARIANTS.items():
        if word in text and rng.random() < 0.5:
            text = text.replace(word, rng.choice(options))
    return rng.choice(_EMOJI) + text + rng.choice(_EMOJI)


def _train_variants(text: str, rng: random.Random) -> str:
    for word, options in _TRAIN_VARIANTS.items():
        if word in text and rng.random() < 0.3:
            text = text.replace(word, rng.choice(options))
    return text


def family_texts(family: Family, n: int, seed: int = SEED) -> list[str]:
    """``n`` distinct texts of ``family`` (fewer if its pools cannot make that many), deterministic."""
    rng = random.Random(f"{seed}:{family.name}")  # noqa: S311 - reproducible data, not a secret
    # a stream of its own, so the held-out families' texts (which skip this step) are exactly as shipped
    extra = None if family.held_out else random.Random(f"{seed}:{family.name}:variants")  # noqa: S311
    out: dict[str, None] = {}
    for _ in range(n * 20):
        if len(out) >= n:
            break
        parts = [rng.choice(pool) for pool in family.slots]
        parts = [p for p in parts if p]
        if family.shuffle and rng.random() < 0.5:
            rng.shuffle(parts)
        sep = rng.choice(_SEPS)
        text = _paraphrase(_fill(sep.join(parts), rng), rng)
        if extra is not None:
            text = _train_variants(text, extra)
        out.setdefault(text, None)
    return list(out)


def _select_bucket(text: str) -> bool:
    return int(hashlib.sha1(f"team-select{text}".encode(), usedforsecurity=False).hexdigest()[:8], 16) % 10 == 0


def category_examples(seed: int = SEED) -> list[Example]:
    """The train families' texts: split ``train``, a stable tenth ``select``; source ``team-<category>`` or
    ``team-negative``. Held-out families are not here (see :func:`load_team_set`)."""
    out: list[Example] = []
    for fam in FAMILIES:
        if fam.held_out:
            continue
        source = f"team-{fam.labels[0]}" if fam.labels else "team-negative"
        for text in family_texts(fam, TRAIN_PER_FAMILY, seed):
            split = "select" if _select_bucket(text) else "train"
            out.append(Example(text, {c: 1 for c in fam.labels}, source, split, {"family": fam.name}))
    return out


def team_set_rows(seed: int = SEED) -> list[tuple[str, tuple[str, ...], str]]:
    """``(text, labels, family)`` of the held-out families, as written to :data:`TEAM_SET_FILE`."""
    rows = []
    for fam in FAMILIES:
        if fam.held_out:
            rows += [(t, fam.labels, fam.name) for t in family_texts(fam, TEST_PER_FAMILY, seed)]
    return rows


def write_team_set(path: Path = TEAM_SET_FILE, seed: int = SEED) -> int:
    """Write the team category set (``text``, ``labels`` comma-separated or empty, ``family``); the row count."""
    rows = team_set_rows(seed)
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, delimiter="\t", lineterminator="\n")
        w.writerow(["text", "labels", "family"])
        for text, labels, fam in rows:
            w.writerow([text, ",".join(labels), fam])
    return len(rows)


def load_team_set(path: Path = TEAM_SET_FILE) -> list[Example]:
    """The team category set as test examples (split ``test``, source ``team-test:<family>``)."""
    if not path.is_file():
        raise DatasetError(f"{path} not found (python -m moderation.category_data --write)")
    out = []
    with path.open(encoding="utf-8", newline="") as fh:
        for number, row in enumerate(csv.DictReader(fh, delimiter="\t"), start=2):
            labels = [c for c in (row.get("labels") or "").split(",") if c]
            if not row.get("text") or any(c not in MODEL_CATEGORIES for c in labels):
                raise DatasetError(f"{path}:{number}: a row needs a text and labels from {MODEL_CATEGORIES}")
            source = f"team-test:{row['family']}"  # by family: the report shows harmless rows per family
            out.append(Example(row["text"], {c: 1 for c in labels}, source, "test", {"family": row["family"]}))
    return out


def disguise_keywords() -> list[str]:
    """Words of the positive train families worth disguising in training copies (``jianzhi``, ``shuadan``,
    ``weixin``): jieba's words of two or more ideographs in their phrase pools, less the words that the hard
    negatives also use (a pinyin 工会 must stay harmless)."""

    def words(families: Sequence[Family]) -> set[str]:
        return {
            w
            for f in families
            for pool in f.slots
            for phrase in pool
            for w in jieba.lcut(phrase)
            if len(w) >= 2 and all("\u4e00" <= c <= "\u9fff" for c in w)
        }

    positive = words([f for f in FAMILIES if f.labels and not f.held_out])
    return sorted(positive - words([f for f in FAMILIES if not f.labels]))


def all_examples(root: Path = DEFAULT_DATA_ROOT) -> list[Example]:
    """What the linear scorer trains and selects on: :func:`moderation.dataset.all_examples` (COLD, SWSR, the
    lexicon-derived sentences) plus the team families' train and select texts. The shipped transformer was
    trained before these existed, on :func:`moderation.dataset.all_examples` alone."""
    return dataset_examples(root) + category_examples()


def main(argv: Sequence[str] | None = None) -> None:
    """Print the families' sizes; ``--write`` rewrites the team category set."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true", help=f"rewrite {TEAM_SET_FILE.name}")
    args = ap.parse_args(argv)
    n_train, n_fam = len(category_examples()), sum(not f.held_out for f in FAMILIES)
    print(f"{n_train} texts (train and select) of {n_fam} families")
    if args.write:
        n = write_team_set()
        print(f"{n} held-out texts from {sum(f.held_out for f in FAMILIES)} families -> {TEAM_SET_FILE}")


if __name__ == "__main__":
    main()
