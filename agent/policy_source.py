"""Where a policy file given to `run --policy` comes from, and whether to believe it.

A signed policy (the JSON `cabinetctl policy sign` writes) is verified with the central
key pinned in agent.toml. A plain TOML policy is accepted only by a simulated cabinet:
on real hardware an unsigned file must never decide who can open the cabinet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.commands import PolicyRefused, open_policy
from agent.wire import MalformedJson, VerifyKey, parse_json
from config.loading import ConfigError, load_model
from config.policy import Policy


class PolicyError(Exception):
    pass


def read_policy_file(
    path: Path, central_key: VerifyKey | None, *, allow_plain: bool
) -> tuple[Policy, dict[str, Any] | None]:
    if path.suffix == ".toml":
        if not allow_plain:
            raise PolicyError(
                f"{path}: a plain TOML policy is only accepted by the simulated cabinet; "
                "sign it with `cabinetctl policy sign`"
            )
        try:
            return load_model(Policy, path), None
        except ConfigError as exc:
            raise PolicyError(str(exc)) from None
    try:
        document = parse_json(path.read_bytes())
    except FileNotFoundError:
        raise PolicyError(f"{path}: file not found") from None
    except (OSError, MalformedJson) as exc:
        raise PolicyError(f"{path}: not a signed policy JSON ({exc})") from None
    if central_key is None:
        raise PolicyError("keys.central_pubkey is not set: no signed policy can be verified")
    try:
        return open_policy(document, central_key), document
    except PolicyRefused as refused:  # anything else is a bug: it propagates, with its trace
        raise PolicyError(f"{path}: policy refused: {refused.reason}") from None
