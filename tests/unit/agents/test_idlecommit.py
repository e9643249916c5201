"""faust's stuck-commit check no longer fires for a partition that was only idle
(ledgerflow/agents/idlecommit.py): an idle partition counts as committed, one with work left
uncommitted does not."""

from __future__ import annotations

import asyncio

from faust.types import TP, Message

from ledgerflow.agents.app import create_app
from ledgerflow.agents.idlecommit import idle, mark_idle
from ledgerflow.config import Settings

IDLE, ACKED, IN_FLIGHT, DONE = (TP("t.training.commands", p) for p in range(4))


def test_only_partitions_with_nothing_to_commit_are_idle() -> None:
    acked = {ACKED: [41, 42], DONE: []}  # DONE: its acked offsets were committed
    assert idle([IDLE, ACKED, IN_FLIGHT, DONE], acked, {IN_FLIGHT}) == [IDLE, DONE]


def _message(tp: TP, offset: int) -> Message:
    return Message(tp.topic, tp.partition, offset, 0.0, None, [], b"k", b"v", None, tp=tp)


def test_faust_s_own_consumer_gets_its_idle_partitions_stamped_and_the_others_not() -> None:
    """On faust's real consumer object (not started): the state ``verify_event_path`` reads."""

    async def run() -> None:
        consumer = create_app(Settings()).consumer
        stamps = consumer._thread.tp_last_committed_at
        stamps[ACKED] = stamps[IN_FLIGHT] = 1.0  # their last commit: long ago
        consumer._acked[ACKED].append(42)  # acked, the commit handler never committed it: a stall
        waiting, answered = _message(IN_FLIGHT, 7), _message(DONE, 3)
        answered.acked = True
        consumer._unacked_messages.update({waiting, answered})  # delivered; one never acked
        assert mark_idle(consumer, [IDLE, ACKED, IN_FLIGHT, DONE], 5000.0) == [IDLE, DONE]
        assert stamps == {IDLE: 5000.0, ACKED: 1.0, IN_FLIGHT: 1.0, DONE: 5000.0}

    asyncio.run(run())
