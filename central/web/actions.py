"""What a person does from the console: acknowledge, resolve, approve, weigh now.

Each form sends the same signed command as the API (`send_command`), in the name of the
signed-in person, and shows the cabinet's verified answer on the next page. Refusals by
the centre (role, bad input) and by the cabinet are shown as they are, in one line.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from central.web.api import send_command
from central.web.auth import SignedIn, check_csrf
from central.web.i18n import Words
from central.web.render import flash, page_user
from central.web.signin import safe_next

router = APIRouter(include_in_schema=False)


async def _act(
    request: Request, who: SignedIn, device: str, name: str, args: dict[str, Any], back: str
) -> Response:
    words: Words = request.state.words
    say = words.say
    try:
        answer = await send_command(request, who, device, name, args)
    except HTTPException as error:
        flash(request, "bad", say("未发送：", "Not sent: ") + str(error.detail))
        return RedirectResponse(safe_next(back), status_code=303)
    result, reason, seq = answer["result"], answer["reason"], answer["seq"]
    if result == "applied":
        text = say(f"柜子已执行（记录 #{seq}）", f"The cabinet applied it (record #{seq})")
        flash(request, "good", text)
    elif result == "rejected":
        text = say("柜子拒绝：", "The cabinet refused: ") + words.word(reason)
        flash(request, "bad", text)
    else:
        flash(request, "bad", say("柜子 10 秒内未应答", "No answer from the cabinet within 10 s"))
    return RedirectResponse(safe_next(back), status_code=303)


@router.post("/alarms/{device}/{alarm}/ack")
async def acknowledge(
    request: Request,
    device: str,
    alarm: str,
    comment: str = Form("", max_length=2000),
    csrf: str = Form(""),
    back: str = Form("/alarms"),
) -> Response:
    who = page_user(request)
    check_csrf(request, who, csrf)
    args = {"alarm": alarm, "comment": comment.strip() or None}
    return await _act(request, who, device, "ack", args, back)


@router.post("/alarms/{device}/{alarm}/resolve")
async def resolve(
    request: Request,
    device: str,
    alarm: str,
    reason: str = Form(""),
    second: str = Form("", max_length=64),
    # not "comment": each live alarm holds exactly one textarea[name=comment] (the ack's)
    resolve_comment: str = Form("", max_length=2000),
    csrf: str = Form(""),
    back: str = Form("/alarms"),
) -> Response:
    who = page_user(request)
    check_csrf(request, who, csrf)
    args = {
        "alarm": alarm,
        "reason": reason,
        "persons": [who.person, second.strip()],
        "comment": resolve_comment.strip() or None,
    }
    return await _act(request, who, device, "resolve", args, back)


@router.post("/approvals/{device}/{person}/approve")
async def approve(
    request: Request,
    device: str,
    person: str,
    csrf: str = Form(""),
) -> Response:
    who = page_user(request)
    check_csrf(request, who, csrf)
    return await _act(request, who, device, "approve", {"person": person}, "/approvals")


@router.post("/cabinets/{device}/snapshot")
async def weigh_now(request: Request, device: str, csrf: str = Form("")) -> Response:
    """Ask the cabinet to weigh every slot now (`inventory.snapshot`): the weighing the
    daily reconciliation needs to say that the stock, not only the books, agrees."""
    who = page_user(request)
    check_csrf(request, who, csrf)
    return await _act(request, who, device, "snapshot", {}, f"/cabinets/{device}")
