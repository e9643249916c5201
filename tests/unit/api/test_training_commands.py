"""Training commands at the edge: what the training agent would refuse on the body alone (a
reason over ``MAX_REASON_LENGTH``, a TTL out of range) is a 422 before anything is published,
and what the edge lets through the agent does not refuse for those reasons."""

from __future__ import annotations

import pytest

from ledgerflow.api.training import command_of
from ledgerflow.contracts.events import new_event
from ledgerflow.errors import ValidationError
from ledgerflow.training import decide, initial_state
from ledgerflow.training.aggregate import MAX_REASON_LENGTH, MAX_TTL_SECONDS, MIN_TTL_SECONDS
from ledgerflow.training.wire import command_of as aggregate_command

NOW = 1_800_000_000_000_000


@pytest.mark.parametrize(
    ("kind", "body", "field"),
    [
        ("EnableTraining", {"reason": "y" * 200_000}, "reason: 200000 characters; at most 500"),
        ("DisableTraining", {"reason": "y" * (MAX_REASON_LENGTH + 1)}, "reason"),
        ("EnableTraining", {"reason": " "}, "reason"),
        ("EnableTraining", {"reason": "x", "ttl_seconds": MIN_TTL_SECONDS - 1}, "ttl_seconds"),
        ("EnableTraining", {"reason": "x", "ttl_seconds": MAX_TTL_SECONDS + 1}, "ttl_seconds"),
        ("EnableTraining", {"reason": "x", "ttl_seconds": 10**30}, "ttl_seconds"),
        ("EnableTraining", {"reason": "x", "ttl_seconds": True}, "ttl_seconds"),
    ],
)
def test_what_the_agent_would_refuse_is_a_422_at_the_edge(kind: str, body: dict, field: str) -> None:
    with pytest.raises(ValidationError, match=f"^{field}"):
        command_of(kind, body, "cmd-1", "alice")


@pytest.mark.parametrize("ttl", [None, MIN_TTL_SECONDS, MAX_TTL_SECONDS])
def test_what_the_edge_lets_through_the_agent_accepts(ttl: int | None) -> None:
    payload = command_of(
        "EnableTraining", {"reason": "r" * MAX_REASON_LENGTH, "ttl_seconds": ttl}, "c1", "alice"
    )
    record = new_event(
        "EnableTraining",
        tenant="acme",
        subject="acme",
        payload=payload,
        producer="edge:alice",
        occurred_at_micros=NOW,
    )
    (outcome,) = decide(initial_state("acme"), aggregate_command(record), NOW)
    assert type(outcome).__name__ == "TrainingEnabled", outcome


def test_a_keyed_command_id_names_one_scope_and_request() -> None:
    """With an Idempotency-Key the command id is derived, so a retry is the same command."""
    from ledgerflow.api.training import command_id_for

    body = {"reason": "r", "ttl_seconds": 600}
    first = command_id_for("EnableTraining", body, "acme", "alice", "k")
    assert command_id_for("EnableTraining", dict(body), "acme", "alice", "k") == first
    others = {
        command_id_for("DisableTraining", body, "acme", "alice", "k"),
        command_id_for("EnableTraining", body | {"ttl_seconds": 601}, "acme", "alice", "k"),
        command_id_for("EnableTraining", body, "globex", "alice", "k"),
        command_id_for("EnableTraining", body, "acme", "bob", "k"),
        command_id_for("EnableTraining", body, "acme", "alice", "k2"),
        command_id_for("EnableTraining", body, "acme", "alice", None),
    }
    assert first not in others and len(others) == 6
    with pytest.raises(ValidationError, match="Idempotency-Key"):
        command_id_for("EnableTraining", body, "acme", "alice", "x" * 256)
