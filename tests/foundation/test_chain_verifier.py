"""The one chain verifier: a device's stream, in any order, is authentic and whole or says why."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.wire import (
    GENESIS_PREV,
    BadSignature,
    BrokenLink,
    ChainVerifier,
    Duplicate,
    Envelope,
    Fork,
    Malformed,
    SigningKey,
    Verified,
    WrongDevice,
    build_envelope,
    verify_chain,
)
from agent.wire.chain import Missing

KEY = SigningKey.from_seed(b"\x09" * 32)


def stream(count: int, device: str = "cab-1", key: SigningKey = KEY, **data: int) -> list[Envelope]:
    out: list[Envelope] = []
    for seq in range(1, count + 1):
        out.append(
            build_envelope(
                device=device,
                boot=1,
                seq=seq,
                ts=1000 + seq,
                mono=seq,
                clock_ok=True,
                type="door.opened",
                sev="info",
                data={"n": seq, **data},
                prev=out[-1].hash if out else GENESIS_PREV,
                key=key,
            )
        )
    return out


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_a_stream_verifies_in_any_order_with_duplicates_and_leaves_no_hole(data) -> None:
    envelopes = stream(data.draw(st.integers(1, 12)))
    copies = data.draw(st.lists(st.sampled_from(envelopes), max_size=6))
    arrival = data.draw(st.permutations([*envelopes, *copies]))
    verifier = ChainVerifier(KEY.public, "cab-1")
    outcomes = [verifier.feed(env.payload) for env in arrival]
    assert sum(isinstance(o, Verified) for o in outcomes) == len(envelopes)
    assert sum(isinstance(o, Duplicate) for o in outcomes) == len(copies)
    assert verifier.holes() == [] and verifier.received == [(1, len(envelopes))]


def test_a_missing_seq_is_a_hole_until_it_arrives() -> None:
    envelopes = stream(6)
    verifier = ChainVerifier(KEY.public)
    for env in envelopes[:2] + envelopes[4:]:
        assert isinstance(verifier.feed(env.payload), Verified)
    assert verifier.holes() == [(3, 4)]
    assert isinstance(verifier.feed(envelopes[3].payload), Verified)
    assert isinstance(verifier.feed(envelopes[2].payload), Verified)
    assert verifier.holes() == []


def test_another_devices_key_is_a_bad_signature_and_changes_nothing() -> None:
    forged = stream(2, key=SigningKey.generate())
    verifier = ChainVerifier(KEY.public, "cab-1")
    outcome = verifier.feed(forged[0].payload)
    assert isinstance(outcome, BadSignature) and outcome.seq == 1
    assert str(outcome) == "bad signature"
    assert verifier.received == []
    assert isinstance(verifier.feed(stream(1)[0].payload), Verified)


def test_an_envelope_naming_another_device_is_refused_before_its_signature() -> None:
    other = stream(1, device="cab-2")[0]
    outcome = ChainVerifier(KEY.public, "cab-1").feed(other.payload)
    assert isinstance(outcome, WrongDevice) and outcome.claimed == "cab-2"


def test_two_different_signed_envelopes_for_one_seq_are_a_fork() -> None:
    verifier = ChainVerifier(KEY.public)
    assert isinstance(verifier.feed(stream(1)[0].payload), Verified)
    outcome = verifier.feed(stream(1, variant=2)[0].payload)
    assert isinstance(outcome, Fork) and str(outcome) == "two different envelopes claim seq 1"


def test_a_broken_link_is_caught_whichever_neighbour_arrives_first() -> None:
    genuine, other = stream(3), stream(3, variant=2)
    forward = ChainVerifier(KEY.public)
    forward.feed(genuine[1].payload)
    late = forward.feed(other[2].payload)  # seq 3 of another chain: prev is not seq 2's hash
    assert isinstance(late, BrokenLink) and (late.seq, late.other) == (3, 2)
    backward = ChainVerifier(KEY.public)
    backward.feed(other[2].payload)
    early = backward.feed(genuine[1].payload)  # seq 3, already here, does not link to it
    assert isinstance(early, BrokenLink) and (early.seq, early.other) == (2, 3)
    assert "chain broken" in str(early) and "chain broken" in str(late)


def test_seq_1_must_start_from_the_hash_of_nothing() -> None:
    lying = build_envelope(
        device="cab-1", boot=1, seq=1, ts=1, mono=1, clock_ok=True, type="door.opened",
        sev="info", data={}, prev=stream(1)[0].hash, key=KEY,
    )  # fmt: skip
    outcome = ChainVerifier(KEY.public).feed(lying.payload)
    assert isinstance(outcome, BrokenLink) and "does not start a chain" in str(outcome)


def test_bytes_that_are_not_an_envelope_are_malformed_with_a_reason() -> None:
    verifier = ChainVerifier(KEY.public)
    for payload, why in [
        (b"\xff", "not JSON"),
        (b'{"seq":1,"seq":1}', "duplicate key"),
        (stream(1)[0].payload.replace(b'"n":1', b'"n":1.5'), "floats"),
    ]:
        outcome = verifier.feed(payload)
        assert isinstance(outcome, Malformed) and why in str(outcome)


def test_a_stream_continues_from_a_seeded_head_and_asks_lookup_for_what_it_forgot() -> None:
    envelopes = stream(5)
    stored = {env.seq: env.hash for env in envelopes[:3]}
    verifier = ChainVerifier(KEY.public, lookup=stored.get)
    verifier.seed(3, envelopes[2].hash)
    assert isinstance(verifier.feed(envelopes[3].payload), Verified)  # links to the seed
    assert isinstance(verifier.feed(envelopes[1].payload), Duplicate)  # stored earlier
    assert verifier.holes() == []


def test_memory_stays_bounded_on_an_endless_stream() -> None:
    envelopes = stream(60)
    verifier = ChainVerifier(KEY.public, memory=10)
    for env in envelopes:
        assert isinstance(verifier.feed(env.payload), Verified)
    assert verifier.received == [(1, 60)]
    # seq 1's hash is forgotten: a late copy is still not news, nor a new envelope
    assert isinstance(verifier.feed(envelopes[0].payload), Duplicate)


def test_a_whole_record_names_each_failure_by_type() -> None:
    envelopes = [e.fields for e in stream(6)]
    forged = stream(6, key=SigningKey.generate())[4].fields
    report = verify_chain([*envelopes[:2], *envelopes[3:4], forged, envelopes[5]], KEY.public)
    kinds = [type(f.problem) for f in report.failures]
    assert kinds == [Missing, BadSignature]
    assert [f.reason for f in report.failures] == ["missing seq 3..3", "bad signature"]
