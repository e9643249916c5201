"""``writer._encode``: the KEYS/ARGV layout the fenced Lua script reads."""

from __future__ import annotations

from ledgerflow.projections.ops import FencedOps, Position, RedisOp
from ledgerflow.projections.writer import _encode

AT = Position("conversation.events", 1, 42)


def test_fence_key_is_first_and_argv_starts_with_cursor_offset_and_op_count() -> None:
    keys, argv = _encode(FencedOps("fence", AT, (RedisOp("HINCRBY", "h", ("n", 1)),)))
    assert keys == ["fence", "h"]
    assert argv[:3] == ["conversation.events:1", 42, 1]


def test_each_op_is_command_key_index_arg_count_then_args() -> None:
    ops = (
        RedisOp("HSET", "h", ("a", "1", "b", 2)),
        RedisOp("RPUSH", "l", ("x",)),
        RedisOp("HINCRBY", "h", ("n", 5)),
        RedisOp("DEL", "gone"),
    )
    keys, argv = _encode(FencedOps("fence", AT, ops))
    assert keys == ["fence", "h", "l", "gone"]  # a key used twice appears once
    assert argv == [
        "conversation.events:1",
        42,
        4,
        "HSET",
        2,
        4,
        "a",
        "1",
        "b",
        2,
        "RPUSH",
        3,
        1,
        "x",
        "HINCRBY",
        2,
        2,
        "n",
        5,
        "DEL",
        4,
        0,
    ]


def test_op_on_the_fence_key_itself_refers_to_keys_index_one() -> None:
    keys, argv = _encode(FencedOps("fence", AT, (RedisOp("HSET", "fence", ("x", "y")),)))
    assert keys == ["fence"]
    assert argv[3:] == ["HSET", 1, 2, "x", "y"]


def test_group_without_ops_only_moves_the_fence() -> None:
    assert _encode(FencedOps("fence", AT, ())) == (["fence"], ["conversation.events:1", 42, 0])
