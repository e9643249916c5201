"""Consistency tokens (``<partition>:<offset>`` of a ``conversation.events`` record, as
``POST /v1/events`` and ``POST /v1/conversation/step`` return them) are checked before
anyone waits on them: a token that is malformed, names a partition that does not exist
or an offset at or past the log end is refused at once (422), so a made-up token costs
no wait. Only a token for a record that is on the log is waited for (bounded).
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import TopicPartition

from ledgerflow.api.context import EdgeContext
from ledgerflow.api.faults import bounded
from ledgerflow.api.hub import CODES
from ledgerflow.digits import ascii_digits
from ledgerflow.errors import InfrastructureError, ValidationError
from ledgerflow.topics import CONVERSATION_EVENTS, MAX_OFFSET_DIGITS

__all__ = ["Position", "check_token", "parse_token"]

_MAX_PARTITION_DIGITS = 6


@dataclass(frozen=True, slots=True)
class Position:
    partition: int
    offset: int


def parse_token(token: str) -> Position:
    """The token's position; ValidationError (422) unless it is ``<partition>:<offset>``."""
    partition, sep, offset = token.partition(":")
    numbers = ascii_digits(partition, _MAX_PARTITION_DIGITS) and ascii_digits(offset, MAX_OFFSET_DIGITS)
    if not (sep and numbers):
        raise ValidationError(f"consistency_token {token[:60]!r} is not <partition>:<offset>")
    return Position(int(partition), int(offset))


async def check_token(ctx: EdgeContext, token: str) -> Position:
    """Step 1: shape. Step 2: the partition exists. Step 3: the offset is on the log
    (below the hub's read position, else below the log end asked of Kafka)."""
    # Step 1.
    position = parse_token(token)
    # Step 2.
    topic = ctx.settings.topic(CONVERSATION_EVENTS)
    count = ctx.hub.partitions.get(topic, 0)
    if position.partition >= count:
        raise ValidationError(
            f"consistency_token {token!r}: partition {position.partition} does not exist "
            f"({count} partitions); use a token the edge returned"
        )
    # Step 3.
    if position.offset < _hub_position(ctx, position.partition):
        return position
    if ctx.offsets is None:
        raise InfrastructureError("the edge cannot check consistency tokens yet (no offsets consumer)")
    tp = TopicPartition(topic, position.partition)
    ends = await bounded(ctx.offsets.end_offsets([tp]), "Kafka end offset lookup")
    if position.offset >= ends[tp]:
        raise ValidationError(
            f"consistency_token {token!r} is ahead of the log (end offset {ends[tp]}); "
            "use a token the edge returned"
        )
    return position


def _hub_position(ctx: EdgeContext, partition: int) -> int:
    """The next offset the hub will read of ``conversation.events[partition]``."""
    key = (CODES[CONVERSATION_EVENTS], partition)
    return ctx.hub.live_positions([key])[key] + 1
