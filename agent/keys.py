"""Key files: one line, base64url of the 32-byte Ed25519 seed, mode 0600, never overwritten."""

from __future__ import annotations

import os
from pathlib import Path

from agent.wire import SigningKey, WireError


class KeyFileError(Exception):
    pass


def write_new_key(path: Path) -> SigningKey:
    """Create a fresh key at `path` (0600). Refuses to overwrite: losing a device key
    breaks its chain of signatures, so replacing one must be a deliberate act."""
    key = SigningKey.generate()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path} already exists: refusing to overwrite a key") from None
    except OSError as exc:
        raise KeyFileError(f"cannot create {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w") as handle:
        handle.write(key.to_text())
        handle.flush()
        os.fsync(handle.fileno())
    return key


def read_key(path: Path) -> SigningKey:
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise KeyFileError(f"{path}: key file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"{path}: cannot read key: {exc}") from None
    mode = path.stat().st_mode & 0o077
    if mode:
        raise KeyFileError(f"{path}: private key is readable by others (chmod 600 it)")
    try:
        return SigningKey.from_text(text)
    except WireError as exc:
        raise KeyFileError(f"{path}: not a key file ({exc})") from None
