"""``writer._encode_batch``: the KEYS/ARGV layout the fenced Lua script reads."""

from __future__ import annotations

import orjson

from ledgerflow.projections.ops import FencedOps, Position, RedisOp
from ledgerflow.projections.writer import _encode_batch

AT = Position("conversation.events", 1, 42)


def test_one_call_per_fence_key_with_the_fence_first() -> None:
    calls = _encode_batch([FencedOps("fence", AT, (RedisOp("HINCRBY", "h", ("n", 1)),))])
    assert len(calls) == 1
    keys, argv = calls[0]
    assert keys == ["fence", "h"]
    assert orjson.loads(argv[0]) == [["conversation.events:1", "42", [["HINCRBY", 2, "n", "1"]]]]


def test_each_op_is_command_key_index_then_args_as_strings() -> None:
    ops = (
        RedisOp("HSET", "h", ("a", "1", "b", 2)),
        RedisOp("RPUSH", "l", ("x",)),
        RedisOp("ZADD", "z", (1795905166143947, "m")),
        RedisOp("HINCRBY", "h", ("n", 5)),
        RedisOp("DEL", "gone"),
    )
    [(keys, argv)] = _encode_batch([FencedOps("fence", AT, ops)])
    assert keys == ["fence", "h", "l", "z", "gone"]  # a key used twice appears once
    # Large integers travel as exact strings (a Lua number would round them).
    assert orjson.loads(argv[0])[0][2] == [
        ["HSET", 2, "a", "1", "b", "2"],
        ["RPUSH", 3, "x"],
        ["ZADD", 4, "1795905166143947", "m"],
        ["HINCRBY", 2, "n", "5"],
        ["DEL", 5],
    ]


def test_records_of_one_entity_share_a_call_in_batch_order_and_others_get_their_own() -> None:
    later = Position("conversation.events", 1, 43)
    batch = [
        FencedOps("fence-a", AT, (RedisOp("HSET", "a", ("x", "1")),)),
        FencedOps("fence-b", AT, (RedisOp("HSET", "b", ("x", "1")),)),
        FencedOps("fence-a", later, (RedisOp("HSET", "a", ("x", "2")), RedisOp("RPUSH", "a2", ("y",)))),
    ]
    calls = _encode_batch(batch)
    assert [keys for keys, _ in calls] == [["fence-a", "a", "a2"], ["fence-b", "b"]]
    records = orjson.loads(calls[0][1][0])
    assert [(r[0], r[1]) for r in records] == [
        ("conversation.events:1", "42"),
        ("conversation.events:1", "43"),
    ]
    assert records[1][2] == [["HSET", 2, "x", "2"], ["RPUSH", 3, "y"]]


def test_op_on_the_fence_key_itself_refers_to_keys_index_one() -> None:
    [(keys, argv)] = _encode_batch([FencedOps("fence", AT, (RedisOp("HSET", "fence", ("x", "y")),))])
    assert keys == ["fence"]
    assert orjson.loads(argv[0])[0][2] == [["HSET", 1, "x", "y"]]


def test_group_without_ops_only_moves_the_fence() -> None:
    [(keys, argv)] = _encode_batch([FencedOps("fence", AT, ())])
    assert (keys, orjson.loads(argv[0])) == (["fence"], [["conversation.events:1", "42", []]])
