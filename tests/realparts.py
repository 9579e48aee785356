"""Real external parts (mosquitto, pcscd, socat, pyscard): present, or a loud failure in CI.

Outside CI a missing part skips with the install hint, so a laptop without pcscd can
still run the rest; with CI=true a missing part fails the run, because a skip there
would hide a missing install step.
"""

from __future__ import annotations

import importlib.util
import os
import shutil

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(what: str, hint: str) -> None:
    message = f"real part missing: {what} ({hint})"
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def require_binary(name: str, package: str) -> str:
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.path.exists(p)), None
    )
    if path is None:
        missing(name, f"apt-get install {package}")
    assert path is not None
    return path


def require_module(name: str, hint: str) -> None:
    if importlib.util.find_spec(name) is None:
        missing(f"python module {name}", hint)
