"""Unavailable is not empty: recovery never takes a log that reads shorter than what is known
about it for a complete one (issue 11, case 9). The agents' recovery logic is driven through
small in-memory ports standing in for the output log and the snapshot store; the real
broker restart is tests/integration/test_agent_recovery.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ledgerflow.agents import policy as policy_agent
from ledgerflow.agents.output import CoPartitionedOutput, LogNotReady, Written
from ledgerflow.agents.policy import PolicyAgent, Ports
from ledgerflow.agents.ports import Snapshot
from ledgerflow.config import Settings
from ledgerflow.contracts.chain import ChainHead
from tests.unit.agents.memory import HeadStore, InputTopic, Reference

SETTINGS = Settings(state_dir=Path("/nonexistent"))


def _snapshots() -> HeadStore:
    """The snapshot of partition 0: it covers output offsets up to 41."""
    store = HeadStore()
    store.snapshots[0] = Snapshot(90, 41, {"conv-1": ChainHead("conv-1", 42, "ab" * 32)})
    return store


class OutputPort:
    """An output log whose end offset the test sets (what a restarting broker answers)."""

    def __init__(self, end: int) -> None:
        self.end_offset = end
        self.reads: list[tuple[int, int]] = []

    async def claim(self, partition: int) -> None:
        return None

    async def end(self, partition: int) -> int:
        return self.end_offset

    async def read(self, partition: int, start: int = 0, end: int | None = None) -> AsyncIterator[Written]:
        self.reads.append((start, self.end_offset if end is None else end))
        return
        yield  # an async generator that yields nothing


def _agent(output: OutputPort) -> PolicyAgent:
    inputs = InputTopic()
    for _ in range(91):  # the input partition holds the snapshot's last decided input (90)
        inputs.append(0, b"", None)
    ports = Ports(_snapshots(), output, inputs, Reference(), None)
    return PolicyAgent(SETTINGS, ports)


def test_a_log_shorter_than_the_snapshot_is_waited_for_not_restarted_from_genesis() -> None:
    agent = _agent(OutputPort(end=0))  # the broker answers, but the log reads empty
    with pytest.raises(LogNotReady, match="not readable to its end yet"):
        asyncio.run(agent._recover(0))


def test_once_the_log_reaches_the_snapshot_recovery_keeps_the_chain_heads() -> None:
    output = OutputPort(end=42)
    state = asyncio.run(_agent(output)._recover(0))
    assert (state.last_input, state.out_offset, state.heads["conv-1"].sequence) == (90, 41, 42)
    assert output.reads == [(0, 42)]  # from the dedupe window's start, to the end


def test_a_log_behind_its_snapshot_for_long_is_a_recreated_topic_and_trusted_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(policy_agent, "SNAPSHOT_DISTRUST_S", 0.0)
    state = asyncio.run(_agent(OutputPort(end=0))._recover(0))
    assert (state.last_input, state.out_offset, state.heads) == (-1, -1, {})


class EndsPort:
    """An aiokafka consumer's ``end_offsets``, scripted."""

    def __init__(self, ends: list[int]) -> None:
        self.ends = ends

    async def end_offsets(self, tps: list[Any]) -> dict[Any, int]:
        return {tps[0]: self.ends.pop(0)}


def test_an_output_log_that_reads_shorter_than_already_seen_is_not_ready() -> None:
    output = CoPartitionedOutput(SETTINGS, "in", "out")
    output._reader = EndsPort([7, 3, 9])  # type: ignore[assignment]
    assert asyncio.run(output.end(0)) == 7
    with pytest.raises(LogNotReady, match=r"out\[0\] ends at 3 but offset 6 was already seen"):
        asyncio.run(output.end(0))
    assert asyncio.run(output.end(0)) == 9
