"""The chain-head snapshot is a shortcut a new owner starts from: it must never hold heads older
than the output offset it claims to cover, or a recovery that reads the log only from there
forks a chain (two decisions with one sequence number)."""

from __future__ import annotations

import asyncio

import pytest

from ledgerflow.agents import policy
from ledgerflow.agents.output import LogNotReady
from ledgerflow.agents.policy import SNAPSHOT_DISTRUST_S, SNAPSHOT_EVERY_S, PolicyAgent, Ports
from tests.unit.agents.memory import FencedWriter, chained, turn
from tests.unit.agents.test_policy_agent import SETTINGS, World, _conversation


def test_a_zombies_late_save_does_not_put_an_old_head_under_a_newer_offset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(policy, "DEDUPE_WINDOW", 5)  # stands for 10,000 offsets of other traffic
    w = World()

    def agent() -> PolicyAgent:
        return PolicyAgent(
            SETTINGS, Ports(w.heads, FencedWriter(w.output), w.inputs, w.reference, w.letters), clock=w.clock
        )

    async def run() -> None:
        zombie = agent()
        await zombie.handle([w.inputs.add(0, turn("k", 1))])
        w.clock.now += 0.1
        batch = await zombie.recover([w.inputs.add(0, turn("k", 2))])
        await zombie.write(zombie.decide_batch(batch))  # written, then stopped before its save
        owner = agent()  # the partition's new owner
        await owner.handle([w.inputs.add(0, turn("k", 3))])
        w.clock.now += SNAPSHOT_EVERY_S
        await zombie.snapshot()  # wakes up: its save is older than the owner's
        for n in range(1, 10):  # other conversations, the owner saving as it goes
            w.clock.now += SNAPSHOT_EVERY_S
            await owner.handle([w.inputs.add(0, turn("x", n))])
        await agent().handle([w.inputs.add(0, turn("k", 4))])  # the next owner

    asyncio.run(run())
    k = [d for d in w.output.decisions(0) if d.subject == "k"]
    assert [d.sequence for d in k] == [1, 2, 3, 4], (
        "a stale head was saved over a newer one: the chain forked"
    )
    assert chained(k, _conversation)


def test_a_recreated_topic_drops_the_stored_snapshot_too() -> None:
    """After the output topic is re-created the snapshot is distrusted: dropped in Redis, not only
    in memory, or the next owner starts a returning conversation from the old topic's head."""
    w = World()
    w.handle([w.inputs.add(0, turn("k", 1))])
    w.output.partitions.clear()
    w.inputs.partitions.clear()  # both topics deleted and re-created
    w.agent = w.new_agent()
    with pytest.raises(LogNotReady):
        w.handle([w.inputs.add(0, turn("m", 1))])
    w.clock.now += SNAPSHOT_DISTRUST_S + 1
    w.agent.revoke({0})
    w.handle([w.inputs.partitions[0][0]])
    w.clock.now += 2
    w.agent = w.new_agent()  # the next rebalance
    w.handle([w.inputs.add(0, turn("k", 1, content="again"))])
    assert [d.sequence for d in w.output.decisions(0) if d.subject == "k"] == [1]
