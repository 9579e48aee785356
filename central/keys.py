"""The central Ed25519 key (signs policies and commands) and the public keys it trusts.

A key file is one line: base64url of the 32-byte seed (agent.wire's format). It is
written with mode 0600 from the first byte (O_CREAT|O_EXCL with the mode), so there is
no window in which another user could read it, and an existing key is never replaced:
losing the central key means re-provisioning every cabinet's pinned public key.
"""

from __future__ import annotations

import os
from pathlib import Path

from agent.wire import SigningKey, VerifyKey, WireError
from central.errors import CentralError


def generate_key_file(path: Path) -> SigningKey:
    """Write a fresh central key to `path` (mode 0600); refuse to overwrite anything."""
    key = SigningKey.generate()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise CentralError(
            f"{path} already exists: refusing to overwrite a key "
            "(every cabinet pins the old public key)"
        ) from None
    except OSError as exc:
        raise CentralError(f"cannot create {path}: {exc.strerror}") from None
    try:
        # The umask can only remove bits; make 0600 exact whatever the umask was.
        os.fchmod(fd, 0o600)
        os.write(fd, key.to_text().encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    return key


def load_signing_key(path: Path | None) -> SigningKey:
    if path is None:
        raise CentralError("this needs the central key: give --key FILE (or CABINETCTL_KEY)")
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise CentralError(f"key file {path} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CentralError(f"cannot read key file {path}: {exc}") from None
    # The same rule as the agent's: a key others can read must be presumed copied.
    if path.stat().st_mode & 0o077:
        raise CentralError(f"{path}: private key is readable by others (chmod 600 it)")
    try:
        return SigningKey.from_text(text)
    except WireError as exc:
        raise CentralError(f"{path} is not a key file ({exc})") from None


def parse_public_key(value: str) -> VerifyKey:
    """A public key given as base64url, as the `pubkey <b64>` line, or as a file of either."""
    text = value.strip()
    try:
        return VerifyKey.from_text(text)
    except WireError as direct:
        path = Path(value)
        if not path.is_file():
            raise CentralError(
                f"{value!r} is neither a public key (base64url of 32 bytes) nor a file: {direct}"
            ) from None
    try:
        content = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CentralError(f"cannot read public key file {path}: {exc}") from None
    lines = [line for line in content.splitlines() if line.strip()]
    if len(lines) != 1:
        raise CentralError(f"{path}: expected one line with a public key")
    try:
        return VerifyKey.from_text(lines[0])
    except WireError as exc:
        raise CentralError(f"{path}: not a public key ({exc})") from None
