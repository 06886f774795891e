"""The chain of custody over the whole life of a capture, and every kind of tampering."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from tests.factories import by_agent, requested

from forensic_checkpoint.api.custody import (
    Actor,
    ActorKind,
    CustodyAction,
    CustodyEntry,
    KubeletResponse,
)
from forensic_checkpoint.domain.evidence import custody
from forensic_checkpoint.errors import IntegrityError

SUBJECT = "6f1c2a8e-0d1b-4e57-9a51-3c1f4f0b2d11"
T0 = datetime(2026, 11, 28, 12, 0, 0, 123456, tzinfo=UTC)
ARCHIVE_SHA = "a" * 64
OBJECT_SHA = "b" * 64


def life_of_a_capture() -> list[CustodyEntry]:
    """Requested by a user, captured, exported encrypted, verified, then deleted by retention."""
    chain = requested(SUBJECT, T0, uid="u-1")
    chain = by_agent(
        chain,
        SUBJECT,
        CustodyAction.CAPTURED,
        T0 + timedelta(seconds=3),
        node="node-a",
        kubelet=KubeletResponse(
            status_code=200, message="/var/lib/kubelet/checkpoints/checkpoint-web.tar"
        ),
        sha256=ARCHIVE_SHA,
        size_bytes=1234,
    )
    chain = by_agent(
        chain,
        SUBJECT,
        CustodyAction.EXPORTED,
        T0 + timedelta(seconds=9),
        url="s3://evidence/prod/default/web/app/key/" + OBJECT_SHA + ".tar.age",
        object_sha256=OBJECT_SHA,
        encrypted=True,
    )
    chain = by_agent(
        chain, SUBJECT, CustodyAction.VERIFIED, T0 + timedelta(seconds=10), object_sha256=OBJECT_SHA
    )
    return by_agent(
        chain,
        SUBJECT,
        CustodyAction.DELETED,
        T0 + timedelta(days=30),
        node="node-a",
        reason="RetentionMaxAge",
    )


def test_whole_life_verifies_and_links() -> None:
    chain = life_of_a_capture()
    assert [e.action for e in chain] == list(CustodyAction)
    assert [e.sequence for e in chain] == [0, 1, 2, 3, 4]
    assert chain[0].prev_hash == custody.chain_anchor(SUBJECT)
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(chain))
    verdict = custody.verify_chain(chain, SUBJECT, expected_head=chain[-1].hash)
    assert verdict.ok, verdict.problems
    assert custody.captured_sha256(chain) == ARCHIVE_SHA


def test_append_does_not_modify_its_input() -> None:
    chain = life_of_a_capture()[:2]
    before = [e.model_copy() for e in chain]
    longer = custody.append(
        chain,
        SUBJECT,
        action=CustodyAction.VERIFIED,
        at=T0 + timedelta(hours=1),
        actor=Actor(kind=ActorKind.ANALYST, name="bob"),
    )
    assert chain == before
    assert len(longer) == 3


def test_survives_the_round_trip_through_the_custom_resource_json() -> None:
    """What the operator writes to status.custody and reads back verifies unchanged."""
    chain = life_of_a_capture()
    stored = json.loads(json.dumps([e.to_kube() for e in chain]))
    assert stored[1]["kubelet"]["statusCode"] == 200
    assert "prevHash" in stored[0]
    parsed = custody.parse_chain(stored)
    assert custody.verify_chain(parsed, SUBJECT, expected_head=chain[-1].hash).ok


def test_same_content_gives_the_same_hashes() -> None:
    assert [e.hash for e in life_of_a_capture()] == [e.hash for e in life_of_a_capture()]


def _edit(chain: list[CustodyEntry], index: int, **update: object) -> list[CustodyEntry]:
    out = list(chain)
    out[index] = chain[index].model_copy(update=update)
    return out


def test_an_edited_field_is_detected() -> None:
    tampered = _edit(life_of_a_capture(), 1, sha256="c" * 64)
    verdict = custody.verify_chain(tampered, SUBJECT)
    assert not verdict.ok
    assert verdict.problems == ["entry 1: content does not match its hash"]


def test_an_edit_with_a_recomputed_hash_breaks_the_next_link() -> None:
    chain = life_of_a_capture()
    forged = chain[1].model_copy(update={"sha256": "c" * 64})
    forged = forged.model_copy(update={"hash": custody.entry_hash(forged)})
    tampered = [chain[0], forged, *chain[2:]]
    problems = custody.verify_chain(tampered, SUBJECT).problems
    assert problems == ["entry 2: prevHash does not link to the previous entry"]


def test_a_removed_middle_entry_is_detected() -> None:
    chain = life_of_a_capture()
    problems = custody.verify_chain([*chain[:2], *chain[3:]], SUBJECT).problems
    assert "entry 2: prevHash does not link to the previous entry" in problems
    assert "entry 2: sequence is 3" in problems


def test_reordered_entries_are_detected() -> None:
    chain = life_of_a_capture()
    swapped = [chain[0], chain[2], chain[1], *chain[3:]]
    assert not custody.verify_chain(swapped, SUBJECT).ok


def test_a_cut_off_tail_is_detected_only_against_the_recorded_head() -> None:
    chain = life_of_a_capture()
    truncated = chain[:-1]
    # The links alone cannot show it (documented limit) ...
    assert custody.verify_chain(truncated, SUBJECT).ok
    # ... the head kept off-cluster does.
    verdict = custody.verify_chain(truncated, SUBJECT, expected_head=chain[-1].hash)
    assert not verdict.ok
    with pytest.raises(IntegrityError, match="head"):
        verdict.raise_for_problems()


def test_a_chain_moved_to_another_checkpoint_is_detected() -> None:
    problems = custody.verify_chain(life_of_a_capture(), "another-uid").problems
    assert problems == ["entry 0: prevHash does not link to the previous entry"]


def test_time_cannot_go_backwards() -> None:
    chain = life_of_a_capture()
    with pytest.raises(IntegrityError, match="precedes"):
        custody.append(
            chain,
            SUBJECT,
            action=CustodyAction.VERIFIED,
            at=T0,
            actor=Actor(kind=ActorKind.ANALYST, name="bob"),
        )


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        custody.append(
            [],
            SUBJECT,
            action=CustodyAction.REQUESTED,
            at=datetime(2026, 1, 1),
            actor=Actor(kind=ActorKind.USER, name="alice"),
        )


def test_times_in_other_zones_hash_as_utc() -> None:
    other_zone = T0.astimezone(timezone(timedelta(hours=5)))
    a = custody.append(
        [],
        SUBJECT,
        action=CustodyAction.REQUESTED,
        at=T0,
        actor=Actor(kind=ActorKind.USER, name="alice"),
    )
    b = custody.append(
        [],
        SUBJECT,
        action=CustodyAction.REQUESTED,
        at=other_zone,
        actor=Actor(kind=ActorKind.USER, name="alice"),
    )
    assert a[0].hash == b[0].hash


def test_malformed_entries_raise_integrity_error() -> None:
    with pytest.raises(IntegrityError, match="malformed"):
        custody.parse_chain([{"sequence": 0, "action": "Stolen"}])
