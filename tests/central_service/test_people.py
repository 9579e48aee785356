"""Console accounts: memory-hard password hashes, tokens kept only as hashes."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from central.errors import CentralError
from central.store import Store, User
from central.store.schema import api_tokens, users


def test_a_user_signs_in_with_the_right_password_only(store: Store) -> None:
    store.add_user("zhang", "p-1001", "keeper", "correct horse battery")
    assert store.check_password("zhang", "correct horse battery") == User(
        "zhang", "p-1001", "keeper"
    )
    assert store.check_password("zhang", "wrong horse battery") is None
    assert store.check_password("nobody", "correct horse battery") is None
    assert store.check_password("zhang", "x" * 5000) is None


def test_passwords_are_stored_as_argon2id_hashes_and_tokens_as_sha256(store: Store) -> None:
    store.add_user("li", "p-1002", "auditor", "a long passphrase")
    token = store.create_token("li")
    with store.connection() as conn:
        (hashed,) = conn.execute(select(users.c.password_hash)).one()
        (kept,) = conn.execute(select(api_tokens.c.token_hash)).one()
    assert hashed.startswith("$argon2id$") and "a long passphrase" not in hashed
    assert token not in kept and len(kept) == 64
    assert store.user_for_token(token) == User("li", "p-1002", "auditor")
    assert store.user_for_token(token + "x") is None
    assert store.user_for_token("") is None


@pytest.mark.parametrize(
    ("login", "person", "role", "password", "why"),
    [
        ("a b", "p-1", "keeper", "longenough", "login"),
        ("ok", "p-1", "janitor", "longenough", "role"),
        ("ok", "p-1", "keeper", "short", "password"),
        ("ok", "p\n1", "keeper", "longenough", "person"),
    ],
)
def test_bad_accounts_are_refused_with_the_reason(
    store: Store, login: str, person: str, role: str, password: str, why: str
) -> None:
    with pytest.raises(CentralError, match=why):
        store.add_user(login, person, role, password)


def test_a_login_cannot_be_added_twice_and_a_token_needs_a_login(store: Store) -> None:
    store.add_user("wang", "p-2001", "safety_officer", None)
    with pytest.raises(CentralError, match="exists"):
        store.add_user("wang", "p-2001", "keeper", None)
    with pytest.raises(CentralError, match="no login"):
        store.create_token("ghost")
    assert store.check_password("wang", "anything at all") is None  # token-only account
