"""Names of persons and containers, from the policies the centre signed.

`policies` in central.toml is a directory of policy files: signed JSON (what
`cabinetctl policy sign` writes; believed only if it verifies with the central key) or
the TOML source. Each names its `cabinet` ("*" for any); of several for one cabinet the
highest `version` wins. Only names are taken from them: what a cabinet *did* comes from
its signed record, never from a policy file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agent.wire import VerifyKey
from central.errors import EX_CONFIG, CentralError
from central.policy_tools import load_signed_policy
from config.loading import ConfigError, problems_from, read_toml
from config.policy import Policy


def _one(path: Path, central: VerifyKey) -> dict[str, Any]:
    if path.suffix == ".json":
        document, _ = load_signed_policy(path, central)
        return dict(document["policy"])
    text, data = read_toml(path)
    try:
        Policy.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(str(path), problems_from(exc, text)) from None
    return data


def load_policies(directory: Path | None, central: VerifyKey) -> dict[str, dict[str, Any]]:
    """cabinet id (or "*") -> the newest policy document for it."""
    if directory is None:
        return {}
    if not directory.is_dir():
        raise CentralError(f"policies {directory}: not a directory", EX_CONFIG)
    newest: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.iterdir()):
        if path.suffix not in (".json", ".toml") or not path.is_file():
            continue
        policy = _one(path, central)
        cabinet = str(policy.get("cabinet", "*"))
        if cabinet not in newest or policy.get("version", 0) > newest[cabinet].get("version", 0):
            newest[cabinet] = policy
    return newest
