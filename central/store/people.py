"""The console's accounts: logins, roles, argon2id password hashes and API tokens.

A login acts as one policy person (`person`): every command it sends names that person
in `by`, and the cabinet checks that person's rights again under its own policy. The
password hash is argon2id (argon2-cffi's defaults: memory-hard, 64 MiB, per-hash salt);
an API token is 256 random bits shown once, of which only the SHA-256 is kept, so a
copy of the database does not log anyone in.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Connection, select, update

from central.errors import CentralError
from central.store.engine import insert_ignore
from central.store.records import ROLES, User
from central.store.schema import api_tokens, users

LOGIN = re.compile(r"^[A-Za-z0-9._@-]{1,128}$")
PERSON = re.compile(r"^[^\x00-\x1f\x7f]{1,128}$")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024  # argon2 hashes anything; a megabyte "password" is an attack

_hasher = PasswordHasher()
# Checking an unknown login costs the same as a wrong password: no login enumeration.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def _check_user(login: str, person: str, role: str, password: str | None) -> None:
    if not LOGIN.match(login):
        raise CentralError(f"login {login!r}: 1-128 of letters, digits and . _ @ -")
    if not PERSON.match(person):
        raise CentralError(f"person {person!r}: 1-128 printable characters")
    if role not in ROLES:
        raise CentralError(f"role {role!r}: one of {', '.join(ROLES)}")
    if password is not None and not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise CentralError(f"password: {MIN_PASSWORD} to {MAX_PASSWORD} characters")


def add_user(conn: Connection, login: str, person: str, role: str, password: str | None) -> User:
    _check_user(login, person, role, password)
    hashed = _hasher.hash(password) if password is not None else None
    row = {
        "login": login,
        "person": person,
        "role": role,
        "password_hash": hashed,
        "created_ms": int(time.time() * 1000),
    }
    if not insert_ignore(conn, users, row):
        raise CentralError(f"login {login!r} exists already")
    return User(login, person, role)


def set_password(conn: Connection, login: str, password: str) -> None:
    _check_user(login, "x", ROLES[0], password)
    done = conn.execute(
        update(users).where(users.c.login == login).values(password_hash=_hasher.hash(password))
    )
    if not done.rowcount:
        raise CentralError(f"no login {login!r}")


def check_password(conn: Connection, login: str, password: str) -> User | None:
    row = conn.execute(select(users).where(users.c.login == login)).first()
    stored = row.password_hash if row is not None else None
    if len(password) > MAX_PASSWORD:
        return None
    try:
        _hasher.verify(stored or _DUMMY_HASH, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if row is None or stored is None:
        return None
    return User(row.login, row.person, row.role)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(conn: Connection, login: str) -> str:
    if conn.execute(select(users.c.login).where(users.c.login == login)).first() is None:
        raise CentralError(f"no login {login!r} (cabinet-central user add {login} ...)")
    token = "cct_" + secrets.token_urlsafe(32)
    insert_ignore(
        conn,
        api_tokens,
        {"token_hash": _token_hash(token), "login": login, "created_ms": int(time.time() * 1000)},
    )
    return token


def user_for_token(conn: Connection, token: str) -> User | None:
    if not token or len(token) > 256:
        return None
    row = conn.execute(
        select(users)
        .join(api_tokens, api_tokens.c.login == users.c.login)
        .where(api_tokens.c.token_hash == _token_hash(token))
    ).first()
    return User(row.login, row.person, row.role) if row is not None else None
