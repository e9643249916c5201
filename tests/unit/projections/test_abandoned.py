"""The pure decisions of removing what a SIGKILLed rebuild left (projections/abandoned.py)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from ledgerflow.errors import ValidationError
from ledgerflow.projections.abandoned import (
    LEASED,
    abandoned,
    cancelled_meanwhile,
    generation_of,
    lease_from,
    space_of,
)
from ledgerflow.projections.guards import copy_in_slot
from ledgerflow.projections.keys import Keys, generations_base

BASE = generations_base("t1.")


def test_keys_are_named_by_their_generation_and_tokens_told_apart() -> None:
    keys = Keys.for_prefix("t1.", "g17abc")
    assert generation_of(keys.conversation("acme", "c1"), BASE) == ("g17abc", False)
    assert generation_of(keys.sentinel(), BASE) == ("g17abc", False)
    assert generation_of(keys.replay_guard("ff00"), BASE) == ("g17abc", True)
    assert generation_of(copy_in_slot(keys.replay_guard("ff00"), 4242), BASE) == (
        "g17abc",
        True,
    )  # cluster copy
    assert generation_of(Keys.for_prefix("t1.").tenant("acme"), BASE) == ("v1", False)


def test_the_pointer_and_other_prefixes_are_no_generation() -> None:
    assert generation_of("lf:t1.rm:active", BASE) is None
    assert generation_of(Keys.for_prefix("t2.", "g1").sentinel(), BASE) is None


def test_a_conversation_named_like_a_token_is_not_one() -> None:
    key = Keys.for_prefix("t1.", "g1").conversation("acme", "x:replaying:y")
    assert generation_of(key, BASE) == ("g1", False)


def test_an_audit_s_scratch_keys_are_named_by_their_space() -> None:
    scratch = Keys("lf:audit:0123abcd:")
    assert space_of(scratch.conversation("acme", "c1"), "lf:audit:") == ("0123abcd", "conv:{acme/c1}")
    assert space_of(scratch.namespace + LEASED, "lf:audit:") == ("0123abcd", LEASED)
    assert space_of(scratch.replay_guard("ff00"), "lf:audit:") == ("0123abcd", "replaying:ff00")
    assert space_of("lf:audit:", "lf:audit:") is None
    assert space_of(scratch.sentinel(), "lf:t1.rm:") is None


def test_only_generations_without_token_pointer_or_owner_are_abandoned() -> None:
    spaces = ["v1", "gkilled", "grunning", "gmine", "gactive", "greplaced"]
    tokened = ["grunning", "gmine"]
    assert abandoned(spaces, tokened, active="gactive", own="gmine") == ["gkilled", "greplaced", "v1"]


def test_the_default_generation_is_kept_while_no_pointer_exists() -> None:
    assert abandoned(["v1", "gkilled"], [], active="v1", own="gmine") == ["gkilled"]


def test_a_token_keeps_even_a_generation_the_pointer_does_not_name() -> None:
    assert abandoned(["g1", "g2"], ["g1", "g2"], active="v1", own="g3") == []


def test_the_lease_is_whole_seconds_from_2_to_3600() -> None:
    assert lease_from({}) == 60
    assert lease_from({"LEDGERFLOW_REBUILD_LEASE_S": "5"}) == 5
    for bad in ("1", "3601", "2.5", "soon"):
        with pytest.raises(ValidationError, match="LEDGERFLOW_REBUILD_LEASE_S"):
            lease_from({"LEDGERFLOW_REBUILD_LEASE_S": bad})


def test_a_cancellation_lost_on_the_way_is_raised_again() -> None:
    """Python 3.11's wait_for (redis-py's send) may drop a cancellation; the sweep raises it."""

    async def lost_then_checked() -> str:
        # what wait_for does when the inner call completes as the cancellation lands:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(10)
        cancelled_meanwhile()
        return "ran on"

    async def run() -> None:
        task = asyncio.create_task(lost_then_checked())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert cancelled_meanwhile() is None  # this task was never cancelled

    asyncio.run(run())
