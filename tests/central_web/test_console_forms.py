"""The console's forms that change something at a cabinet: each needs its page's CSRF
token, and a resolve needs the second person's own username and password."""

from __future__ import annotations

import pytest

from tests.central_web.conftest import DEVICE, PASSWORD, csrf_of


def test_an_ack_form_without_csrf_is_refused(make_client, gateway):
    answer = make_client("wang").post(f"/alarms/{DEVICE}/A3-1/ack", data={"comment": "x"})
    assert answer.status_code == 403
    assert gateway.sent == []


@pytest.mark.parametrize(
    ("login", "path", "data"),
    [
        ("wang", f"/alarms/{DEVICE}/A3-1/ack", {"comment": "x"}),
        (
            "zhang",
            f"/alarms/{DEVICE}/A3-1/resolve",
            {
                "reason": "recount",
                "second": "p-1003",
                "second_login": "li",
                "second_password": PASSWORD,
            },
        ),
        ("zhang", f"/approvals/{DEVICE}/p-1002/approve", {}),
        ("wang", f"/cabinets/{DEVICE}/snapshot", {}),
    ],
)
@pytest.mark.parametrize("token", [None, "a-token-of-another-page"])
def test_a_form_posted_without_its_csrf_token_is_refused(
    make_client, gateway, login, path, data, token
):
    client = make_client(login)
    client.get("/alarms")  # the session has its own token; the post does not carry it
    sent = dict(data) if token is None else {**data, "csrf": token}
    answer = client.post(path, data=sent, follow_redirects=False)
    assert answer.status_code == 403 and "CSRF" in answer.text
    assert gateway.sent == []


def resolve_form(
    token: str, second: str = "p-1003", login: str = "li", password: str = PASSWORD
) -> dict[str, str]:
    return {
        "reason": "recount",
        "second": second,
        "second_login": login,
        "second_password": password,
        "resolve_comment": "复称",
        "csrf": token,
    }


def test_resolving_from_the_page_names_me_and_the_second_person(make_client, gateway):
    client = make_client("zhang")
    token = csrf_of(client.get("/alarms").text)
    client.post(f"/alarms/{DEVICE}/A3-1/resolve", data=resolve_form(token))
    assert gateway.sent[0]["args"] == {
        "alarm": "A3-1",
        "reason": "recount",
        "persons": ["p-1001", "p-1003"],
        "comment": "复称",
    }


@pytest.mark.parametrize(
    ("second", "login", "password", "said"),
    [
        ("p-1003", "li", "wrong password!", "第二人的用户名或密码错误"),
        ("p-1003", "li", "", "第二人须输入自己的用户名和密码"),
        ("p-1003", "nobody", PASSWORD, "第二人的用户名或密码错误"),
        ("p-1003", "zhang", PASSWORD, "不能是您本人"),  # my own account as the second
        ("p-1003", "wang", PASSWORD, "不是所选的第二人"),  # someone else's account
        ("p-4001", "audit", PASSWORD, "不是保管员或安全员"),  # an auditor never signs
    ],
)
def test_a_resolve_whose_second_person_does_not_prove_it_is_not_sent(
    make_client, gateway, second, login, password, said
):
    client = make_client("zhang")
    token = csrf_of(client.get("/alarms").text)
    answer = client.post(
        f"/alarms/{DEVICE}/A3-1/resolve", data=resolve_form(token, second, login, password)
    )
    assert answer.status_code == 200 and "未发送" in answer.text and said in answer.text
    assert gateway.sent == []


def test_wrong_second_passwords_lock_that_account_like_the_sign_in_page(make_client, gateway):
    client = make_client("zhang")
    token = csrf_of(client.get("/alarms").text)
    for _ in range(5):
        guess = resolve_form(token, password="guess1234")
        client.post(f"/alarms/{DEVICE}/A3-1/resolve", data=guess)
    answer = client.post(f"/alarms/{DEVICE}/A3-1/resolve", data=resolve_form(token))
    assert "错误次数过多" in answer.text
    assert gateway.sent == []


def test_the_resolve_form_offers_only_the_other_qualified_persons_by_name(make_client, record):
    record.roles.update(
        {"p-1001": ("keeper",), "p-1002": ("user",), "p-1003": ("keeper", "safety_officer")}
    )
    html = make_client("zhang").get("/alarms").text  # zhang is p-1001, a keeper
    form = html[html.index('name="second"') :].split("</select>")[0]
    assert 'value="p-1003"' in form and "李安全" in form
    assert 'value="p-1001"' not in form  # not myself
    assert 'value="p-1002"' not in form  # a user cannot sign for the books
