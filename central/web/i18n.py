"""Chinese by default, English on request: the words of the record in both languages.

Templates carry their own sentences in pairs (`say("告警", "Alarms")`), so a reader of a
template sees both texts side by side; this module holds the vocabulary that comes from
the record itself (alarm kinds, reasons, ledger kinds, classes of chemicals).
"""

from __future__ import annotations

from central.web.settings import LANGUAGES

VOCABULARY: dict[str, tuple[str, str]] = {
    # alarm kinds
    "door_forced": ("门被强行打开", "door forced"),
    "door_held_open": ("门长时间未关", "door held open"),
    "mass_unexplained": ("重量变化无记录", "unexplained mass change"),
    "mass_mismatch": ("取用量与审批不符", "amount differs from approval"),
    "overdue_return": ("超时未归还", "overdue return"),
    "unknown_item": ("未登记物品", "unknown item"),
    "voc_high": ("VOC 浓度过高", "VOC high"),
    "leak": ("泄漏", "leak"),
    "tamper": ("防拆报警", "tamper"),
    "sensor_fault": ("传感器故障", "sensor fault"),
    "brute_force": ("多次刷卡被拒", "repeated denials"),
    "clock_unsynced": ("时钟未同步", "clock not synchronised"),
    "reader_fault": ("读卡器故障", "reader fault"),
    "two_person_breach": ("双人在场违规", "two-person breach"),
    # clear reasons
    "condition_gone": ("条件消失", "condition gone"),
    "resolved": ("已处理", "resolved"),
    "condition_gone_at_start": ("启动时已消失", "gone at start"),
    # resolve reasons
    "recount": ("重新称量", "recount"),
    "evaporation": ("挥发", "evaporation"),
    "spill": ("洒漏", "spill"),
    "scale_fault": ("秤故障", "scale fault"),
    "delivery_error": ("送货单错误", "delivery error"),
    "theft_reported": ("已报告失窃", "theft reported"),
    "other": ("其他", "other"),
    # ledger kinds
    "withdrawal": ("领用", "withdrawal"),
    "return": ("归还", "return"),
    "received": ("入库", "received"),
    "disposed": ("处置", "disposed"),
    "adjusted": ("账目更正", "adjusted"),
    # classes
    "highly_toxic": ("剧毒", "highly toxic"),
    "explosive_precursor": ("易制爆", "explosive precursor"),
    # session modes, roles
    "local": ("现场双人", "two badges"),
    "remote": ("远程审批", "remote approval"),
    "operator": ("值班员", "operator"),
    "keeper": ("保管员", "keeper"),
    "safety_officer": ("安全员", "safety officer"),
    "auditor": ("审计员", "auditor"),
    "admin": ("管理员", "administrator"),
    # alarm history steps and command answers
    "raised": ("报警", "raised"),
    "acknowledged": ("已确认", "acknowledged"),
    "cleared": ("已解除", "cleared"),
    "applied": ("已执行", "applied"),
    "rejected": ("被拒绝", "rejected"),
    "timeout": ("无应答", "no answer"),
}


def pick_language(requested: str | None, default: str) -> str:
    return requested if requested in LANGUAGES else default


class Words:
    """The translator one page uses: `say(zh, en)` and `word(code)`."""

    def __init__(self, language: str) -> None:
        self.language = language
        self._english = language == "en"

    def say(self, zh: str, en: str) -> str:
        return en if self._english else zh

    def word(self, code: str | None) -> str:
        if code is None:
            return "—"
        pair = VOCABULARY.get(code)
        if pair is None:
            return code
        return pair[1] if self._english else pair[0]
