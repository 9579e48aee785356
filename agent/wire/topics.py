"""MQTT topics, both directions: build them, subscribe to them, and read them back.

    {prefix}/{site}/{device}/evt/{category}   envelopes (QoS 1), category = type's first part
    {prefix}/{site}/{device}/status           retained birth / Last Will
    {prefix}/{site}/{device}/cmd/{name}       signed commands from the centre

`prefix` defaults to `cabinet`. A topic is not signed: whoever reads one checks that it
agrees with the signed content it carries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

DEFAULT_PREFIX: Final = "cabinet"
ANY: Final = "+"  # the single-level wildcard, for a filter over every site or device

TopicKind = Literal["evt", "status", "cmd"]


def category(event_type: str) -> str:
    return event_type.split(".", 1)[0]


def event_topic(prefix: str, site: str, device: str, event_type: str) -> str:
    return f"{prefix}/{site}/{device}/evt/{category(event_type)}"


def status_topic(prefix: str, site: str, device: str) -> str:
    return f"{prefix}/{site}/{device}/status"


def command_topic(prefix: str, site: str, device: str, name: str) -> str:
    return f"{prefix}/{site}/{device}/cmd/{name}"


def event_filter(prefix: str, site: str = ANY, device: str = ANY) -> str:
    return f"{prefix}/{site}/{device}/evt/+"


def status_filter(prefix: str, site: str = ANY, device: str = ANY) -> str:
    return f"{prefix}/{site}/{device}/status"


def command_filter(prefix: str, site: str = ANY, device: str = ANY) -> str:
    return f"{prefix}/{site}/{device}/cmd/+"


@dataclass(frozen=True, slots=True)
class Topic:
    """Where a message was published; `name` is the category (evt) or command (cmd)."""

    site: str
    device: str
    kind: TopicKind
    name: str | None


def parse_topic(prefix: str, topic: str) -> Topic | None:
    """Read a topic of this contract under `prefix`; None for anything else."""
    parts = topic.split("/")
    if parts[0] != prefix or not all(parts) or len(parts) not in (4, 5):
        return None
    site, device, kind = parts[1], parts[2], parts[3]
    if len(parts) == 4:
        return Topic(site, device, "status", None) if kind == "status" else None
    if kind == "evt":
        return Topic(site, device, "evt", parts[4])
    if kind == "cmd":
        return Topic(site, device, "cmd", parts[4])
    return None
