"""What a person does from the console: acknowledge, resolve, approve, weigh now.

Each form sends the same signed command as the API (`send_command`), in the name of the
signed-in person, and shows the cabinet's verified answer on the next page. Refusals by
the centre (role, bad input) and by the cabinet are shown as they are, in one line.

A resolve names two people; the second one proves being there with their own console
username and password, checked here before anything is signed (docs/decisions.md).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from central.web import roles
from central.web.api import send_command
from central.web.auth import SignedIn, check_csrf
from central.web.i18n import Words
from central.web.render import flash, page_user
from central.web.signin import checked_password, safe_next

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


async def _second_signer(
    request: Request, who: SignedIn, second: str, login: str, password: str
) -> str | None:
    """None when the account `login` proves the chosen `second` person is here and may
    sign for the books with `who`; otherwise why not, in one line. Wrong passwords count
    towards the same per-login lockout as the sign-in page: this form is no side door
    for guessing."""
    words: Words = request.state.words
    say = words.say
    if not login or not password:
        return say(
            "第二人须输入自己的用户名和密码",
            "the second person enters their own username and password",
        )
    account = await checked_password(request, login, password)
    if isinstance(account, int) and account:
        return say(
            f"第二人的账号密码错误次数过多，请 {account} 秒后再试",
            f"too many wrong passwords for the second person's account: try again in {account} s",
        )
    if isinstance(account, int):
        request.app.state.log.info("console.second_person_failed", login=login[:64])
        return say("第二人的用户名或密码错误", "the second person's username or password is wrong")
    if account.person == who.person:
        return say(
            "第二人须是另一个人，不能是您本人", "the second person must be someone other than you"
        )
    if account.person != second:
        return say(
            f"账号 {login} 不是所选的第二人", f"the account {login} is not the chosen second person"
        )
    if not roles.may_cosign(account.role):
        return say(
            f"账号 {login} 不是保管员或安全员",
            f"the account {login} is not a keeper or safety officer",
        )
    return None


@router.post("/alarms/{device}/{alarm}/resolve")
async def resolve(
    request: Request,
    device: str,
    alarm: str,
    reason: str = Form(""),
    second: str = Form("", max_length=64),
    second_login: str = Form("", max_length=200),
    second_password: str = Form("", max_length=1000),
    # not "comment": each live alarm holds exactly one textarea[name=comment] (the ack's)
    resolve_comment: str = Form("", max_length=2000),
    csrf: str = Form(""),
    back: str = Form("/alarms"),
) -> Response:
    who = page_user(request)
    check_csrf(request, who, csrf)
    # a role that may not resolve is refused by send_command without asking for a password
    if roles.may_resolve(who.role):
        problem = await _second_signer(
            request, who, second.strip(), second_login.strip(), second_password
        )
        if problem is not None:
            flash(request, "bad", request.state.words.say("未发送：", "Not sent: ") + problem)
            return RedirectResponse(safe_next(back), status_code=303)
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
