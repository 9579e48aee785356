"""The record's words are written down once in code and once for people: they agree."""

from __future__ import annotations

import re
from pathlib import Path

from rules.vocabulary import ALARM_KINDS, EVENT_TYPES

PROTOCOL = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()


def test_every_event_type_is_in_the_protocol_vocabulary_and_no_other():
    section = PROTOCOL.split("## Vocabulary", 1)[1].split("\n## ", 1)[0]
    documented = set()
    for row in re.findall(r"^\| (`[a-z_.]+`(?: / `[a-z_.]+`)*) \|", section, re.M):
        documented |= set(re.findall(r"`([a-z_.]+)`", row))
    assert documented == EVENT_TYPES


def test_every_alarm_kind_is_in_the_protocol_vocabulary():
    kinds = PROTOCOL.split("Alarm kinds:", 1)[1].split("\n\n", 1)[0]
    assert set(re.findall(r"`([a-z_]+)`", kinds)) >= ALARM_KINDS
