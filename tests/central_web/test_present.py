"""How the record reads to a person: grams from integer milligrams, local time, never a crash."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from central.web.present import grams, grams_plain, local_time

SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_grams_are_exact_from_milligrams():
    assert grams(487_500) == "487.500 g"
    assert grams(-100) == "-0.100 g"
    assert grams(1_234_567_891) == "1,234,567.891 g"
    assert grams_plain(-12_500) == "-12.500"
    assert grams(None) == "—"


@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_grams_plain_reads_back_to_the_same_milligrams(mg):
    text = grams_plain(mg)
    sign = -1 if text.startswith("-") else 1
    whole, frac = text.lstrip("-").split(".")
    assert sign * (int(whole) * 1000 + int(frac)) == mg


def test_local_time_is_the_configured_zone():
    assert local_time(1_000, SHANGHAI) == "1970-01-01 08:00:01"
    assert local_time(1_772_328_600_000, SHANGHAI, seconds=False) == "2026-03-01 09:30"


def test_a_time_never_seen_reads_as_a_dash_not_1970():
    assert local_time(0, SHANGHAI) == "—"
    assert local_time(None, SHANGHAI) == "—"


@given(st.integers(min_value=-(2**63), max_value=2**63))
def test_any_time_in_a_record_prints_without_crashing(ms):
    assert local_time(ms, SHANGHAI)
