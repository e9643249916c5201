"""``RedisOp`` refuses commands outside the allow-list and wrong argument counts; ``Position.cursor``."""

from __future__ import annotations

import pytest

from ledgerflow.projections.ops import COMMANDS, Position, RedisOp


@pytest.mark.parametrize(
    ("command", "args"),
    [
        ("HSET", ("f", "v")),
        ("HSET", ("f", "v", "g", 2)),
        ("HINCRBY", ("f", 1)),
        ("HINCRBYFLOAT", ("f", 0.5)),
        ("RPUSH", ("a",)),
        ("RPUSH", ("a", "b", "c")),
        ("LPUSH", ("a",)),
        ("LTRIM", (0, 49)),
        ("ZREMRANGEBYRANK", (0, -51)),
        ("SET", ("v",)),
        ("INCRBY", (3,)),
        ("ZADD", (1.5, "m")),
        ("DEL", ()),
    ],
)
def test_allowed_command_with_right_arity_is_accepted(command: str, args: tuple) -> None:
    op = RedisOp(command, "k", args)
    assert (op.command, op.key, op.args) == (command, "k", args)


@pytest.mark.parametrize(
    ("command", "args", "expected"),
    [
        ("HINCRBY", ("f",), 2),
        ("HINCRBY", ("f", 1, 2), 2),
        ("LTRIM", (0,), 2),
        ("SET", (), 1),
        ("INCRBY", (1, 2), 1),
        ("ZADD", (1,), 2),
        ("ZREMRANGEBYRANK", (0,), 2),
        ("DEL", ("x",), 0),
    ],
)
def test_fixed_arity_command_with_wrong_argument_count_is_refused(
    command: str, args: tuple, expected: int
) -> None:
    with pytest.raises(ValueError, match=f"{command} takes {expected} arguments, got {len(args)}"):
        RedisOp(command, "k", args)


@pytest.mark.parametrize("command", ["EVAL", "FLUSHALL", "hset", "KEYS", ""])
def test_command_outside_allow_list_is_refused(command: str) -> None:
    with pytest.raises(ValueError, match="is not allowed"):
        RedisOp(command, "k", ("x", "y"))


def test_variadic_commands_are_exactly_the_ones_marked_none() -> None:
    assert {c for c, n in COMMANDS.items() if n is None} == {"HSET", "RPUSH", "LPUSH"}


def test_cursor_is_topic_colon_partition() -> None:
    assert Position("conversation.events", 3, 99).cursor == "conversation.events:3"
