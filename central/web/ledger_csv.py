"""The usage ledger (领用记录) as a CSV file a spreadsheet opens correctly, Chinese included.

UTF-8 with a byte-order mark: without it, Excel on a Chinese Windows reads the file as
GBK and shows the names as mojibake. Times are local, masses in grams, people by name
with their ids beside (the ids are what the signed record says).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any
from zoneinfo import ZoneInfo

from central.web.i18n import Words
from central.web.ports import ConsoleStore
from central.web.present import Names, grams_plain, local_time

BOM = "\ufeff"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def text_cell(text: str | None) -> str:
    """Free text as a spreadsheet shows it, never as a formula it would run (CSV injection)."""
    if not text:
        return ""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def ledger_csv(rows: Iterable[Any], store: ConsoleStore, zone: ZoneInfo, words: Words) -> bytes:
    say = words.say
    names = Names(store)
    out = io.StringIO()
    out.write(BOM)
    table = csv.writer(out, lineterminator="\r\n")
    table.writerow(
        [
            say(f"时间 ({zone.key})", f"time ({zone.key})"),
            say("柜号", "cabinet"),
            say("类别", "kind"),
            say("容器", "container"),
            say("名称", "name"),
            "CAS",
            say("数量 (g)", "amount (g)"),
            say("账面余量 (g)", "book after (g)"),
            say("人员", "persons"),
            say("人员编号", "person ids"),
            say("审批人", "approved by"),
            say("用途", "purpose"),
            say("会话", "session"),
            say("记录序号", "record seq"),
        ]
    )
    for r in rows:
        table.writerow(
            [
                local_time(r.ts_ms, zone),
                r.device,
                words.word(r.kind),
                r.container,
                text_cell(r.name),
                r.cas or "",
                grams_plain(r.amount_mg),
                grams_plain(r.book_mg),
                names.many(r.device, r.persons),
                " ".join(r.persons or ()),
                names(r.device, r.approver) if r.approver else "",
                text_cell(r.purpose),
                r.session or "",
                r.seq,
            ]
        )
    return out.getvalue().encode("utf-8")
