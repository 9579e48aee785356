"""The device registry: which cabinets exist, where they are, and the key each one signs with.

A TOML file a person can read and review in version control:

    [device."cab-chem-0042"]
    pubkey = "mB0x...base64url..."
    site = "chem-b2"
    name = "Chemistry B2, room 114"

An event is believed only if the registry knows its device and its signature verifies
with that device's key; the registry is therefore as sensitive as the central key's
public half and is rewritten atomically (temp file + rename).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agent.wire import VerifyKey, WireError
from central.errors import CentralError
from config.loading import ConfigError, problems_from, read_toml, validate

DEFAULT_REGISTRY = Path("devices.toml")
REGISTRY_ENV = "CABINETCTL_REGISTRY"

# The same shapes as agent.toml's device and site (they become MQTT topic levels).
DeviceId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
SiteName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
Label = Annotated[str, Field(max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")]


class _DeviceEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    pubkey: str
    site: SiteName
    name: Label = ""

    @field_validator("pubkey")
    @classmethod
    def _is_key(cls, value: str) -> str:
        try:
            VerifyKey.from_text(value)
        except WireError as exc:
            raise ValueError(f"not an Ed25519 public key: {exc}") from None
        return value


class _RegistryFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    device: dict[DeviceId, _DeviceEntry] = {}


@dataclass(frozen=True)
class Device:
    id: str
    site: str
    name: str
    pubkey: VerifyKey

    @property
    def pubkey_text(self) -> str:
        return self.pubkey.to_text()


@dataclass(frozen=True)
class Registry:
    path: Path
    devices: Mapping[str, Device]

    def keys(self) -> dict[str, VerifyKey]:
        return {device_id: d.pubkey for device_id, d in self.devices.items()}

    def get(self, device_id: str) -> Device:
        device = self.devices.get(device_id)
        if device is None:
            raise CentralError(
                f"device {device_id!r} is not in the registry {self.path} "
                f"(cabinetctl device add {device_id} --pubkey ... --site ...)"
            )
        return device


def registry_path(option: Path | None) -> Path:
    if option is not None:
        return option
    env = os.environ.get(REGISTRY_ENV)
    return Path(env) if env else DEFAULT_REGISTRY


def load_registry(path: Path, *, missing_ok: bool = False) -> Registry:
    if not path.exists():
        if missing_ok:
            return Registry(path, {})
        raise CentralError(
            f"device registry {path} not found (create it with `cabinetctl device add`, "
            f"or point --registry / {REGISTRY_ENV} at it)"
        )
    text, data = read_toml(path)
    try:
        model = validate(_RegistryFile, data, str(path), text)
    except ConfigError as exc:
        problems = [replace(p, line=p.line or _line_of(text, p.key)) for p in exc.problems]
        raise ConfigError(str(path), problems) from None
    devices = {
        device_id: Device(device_id, entry.site, entry.name, VerifyKey.from_text(entry.pubkey))
        for device_id, entry in model.device.items()
    }
    return Registry(path, devices)


def _line_of(text: str, key: str) -> int | None:
    """Line of `device.<id>.<field>` (config.loading's locate() does not read quoted ids)."""
    parts = key.split(".")
    if len(parts) < 2 or parts[0] != "device":
        return None
    field_name = parts[-1] if len(parts) > 2 else None
    device_id = ".".join(parts[1:-1]) if field_name else ".".join(parts[1:])
    headers = {f'[device."{device_id}"]', f"[device.{device_id}]"}
    inside: int | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.split("#", 1)[0].strip()
        if stripped.startswith("["):
            if inside is not None:
                break
            inside = number if stripped.replace(" ", "") in headers else None
        elif inside is not None and field_name and stripped.split("=", 1)[0].strip() == field_name:
            return number
    return inside


def add_device(
    registry: Registry, device_id: str, pubkey: VerifyKey, site: str, name: str, *, replace: bool
) -> Registry:
    """Return the registry with the device added; refuse to change a known one silently."""
    try:
        _RegistryFile.model_validate(
            {"device": {device_id: {"pubkey": pubkey.to_text(), "site": site, "name": name}}}
        )
    except ValidationError as exc:
        why = "; ".join(f"{p.key}: {p.message}" for p in problems_from(exc))
        raise CentralError(f"cannot register {device_id!r}: {why}") from None
    if device_id in registry.devices and not replace:
        known = registry.devices[device_id]
        raise CentralError(
            f"device {device_id!r} is already registered (site {known.site}, key "
            f"{known.pubkey_text[:8]}...): use --replace to change it"
        )
    devices = dict(registry.devices)
    devices[device_id] = Device(device_id, site, name, pubkey)
    return Registry(registry.path, devices)


def remove_device(registry: Registry, device_id: str) -> Registry:
    registry.get(device_id)
    devices = {k: v for k, v in registry.devices.items() if k != device_id}
    return Registry(registry.path, devices)


def render_registry(registry: Registry) -> str:
    lines = [
        "# cabinetctl device registry: device id -> Ed25519 public key (base64url), site, name.",
        "# Events are believed only from devices listed here, signed with this key.",
    ]
    for device_id in sorted(registry.devices):
        device = registry.devices[device_id]
        lines += [
            "",
            f"[device.{_toml_string(device_id)}]",
            f"pubkey = {_toml_string(device.pubkey_text)}",
            f"site = {_toml_string(device.site)}",
            f"name = {_toml_string(device.name)}",
        ]
    return "\n".join(lines) + "\n"


def _toml_string(value: str) -> str:
    # JSON string escapes are a subset of TOML basic-string escapes; control characters
    # (which JSON leaves raw only for DEL) are refused by the model above.
    return json.dumps(value, ensure_ascii=False)


def save_registry(registry: Registry) -> None:
    write_atomically(registry.path, render_registry(registry))
    # Reading back is the cheapest proof that what we wrote is what we meant.
    check = load_registry(registry.path)
    if check.keys().keys() != registry.keys().keys():
        raise CentralError(f"{registry.path}: written registry does not read back the same")


def write_atomically(path: Path, text: str, mode: int = 0o644) -> None:
    directory = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    except OSError as exc:
        raise CentralError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise CentralError(f"cannot write {path}: {exc.strerror}") from None
