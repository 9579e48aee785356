"""Key files, as the agent and the centre keep them.

A private key file is one line: base64url of the 32-byte Ed25519 seed. It is created
with mode 0600 from the first byte (O_CREAT|O_EXCL with the mode), so no other user can
ever read it, and an existing key is never replaced: a device key is the root of its
chain of signatures, and every cabinet pins the central key's public half. A key that
others can read is refused: it must be presumed copied.

A public key is given as base64url, as the `pubkey <base64url>` line keygen prints, or
as a file holding one such line.
"""

from __future__ import annotations

import os
from pathlib import Path

from agent.wire.encoding import WireError
from agent.wire.signing import SigningKey, VerifyKey


class KeyFileError(WireError):
    """A key file that cannot be created, read or trusted; `str()` names the file."""


def write_new_key(path: Path) -> SigningKey:
    """Create a fresh key at `path` (mode 0600, whatever the umask); never overwrite."""
    key = SigningKey.generate()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path} already exists: refusing to overwrite a key") from None
    except OSError as exc:
        raise KeyFileError(f"cannot create {path}: {exc.strerror}") from None
    try:
        os.fchmod(fd, 0o600)  # the umask can only remove bits; make 0600 exact
        os.write(fd, key.to_text().encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    return key


def read_key(path: Path) -> SigningKey:
    """The private key in `path`; refused if missing, unreadable, malformed or not 0600."""
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise KeyFileError(f"{path}: key file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"{path}: cannot read key: {exc}") from None
    if path.stat().st_mode & 0o077:
        raise KeyFileError(f"{path}: private key is readable by others (chmod 600 it)")
    try:
        return SigningKey.from_text(text)
    except WireError as exc:
        raise KeyFileError(f"{path}: not a key file ({exc})") from None


def read_public_key(value: str) -> VerifyKey:
    """A public key given as base64url, as the `pubkey <b64>` line, or as a file of either."""
    try:
        return VerifyKey.from_text(value)
    except WireError as direct:
        path = Path(value)
        if not path.is_file():
            raise KeyFileError(
                f"{value!r} is neither a public key (base64url of 32 bytes) nor a file: {direct}"
            ) from None
    try:
        content = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"cannot read public key file {path}: {exc}") from None
    lines = [line for line in content.splitlines() if line.strip()]
    if len(lines) != 1:
        raise KeyFileError(f"{path}: expected one line with a public key")
    try:
        return VerifyKey.from_text(lines[0])
    except WireError as exc:
        raise KeyFileError(f"{path}: not a public key ({exc})") from None
