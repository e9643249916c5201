"""``writer._encode_batch``: the KEYS/ARGV layout the fenced Lua script reads, and how a batch's
groups are split into calls (one per batch; per hash slot on a Redis Cluster; bounded in size)."""

from __future__ import annotations

import orjson
from redis.crc import key_slot

from ledgerflow.projections.ops import FencedOps, Position, RedisOp
from ledgerflow.projections.writer import _encode_batch

AT = Position("conversation.events", 1, 42)


def test_a_group_names_its_fence_by_key_index_then_cursor_offset_and_ops() -> None:
    calls = _encode_batch([FencedOps("fence", AT, (RedisOp("HINCRBY", "h", ("n", 1)),))])
    assert len(calls) == 1
    keys, argv = calls[0]
    assert keys == ["h", "fence"]
    assert orjson.loads(argv[0]) == [[2, "conversation.events:1", "42", [["HINCRBY", 1, "n", "1"]]]]


def test_each_op_is_command_key_index_then_args_as_strings() -> None:
    ops = (
        RedisOp("HSET", "h", ("a", "1", "b", 2)),
        RedisOp("RPUSH", "l", ("x",)),
        RedisOp("ZADD", "z", (1795905166143947, "m")),
        RedisOp("HINCRBY", "h", ("n", 5)),
        RedisOp("DEL", "gone"),
    )
    [(keys, argv)] = _encode_batch([FencedOps("fence", AT, ops)])
    assert keys == ["h", "l", "z", "gone", "fence"]  # a key used twice appears once
    # Large integers travel as exact strings (a Lua number would round them).
    assert orjson.loads(argv[0])[0][3] == [
        ["HSET", 1, "a", "1", "b", "2"],
        ["RPUSH", 2, "x"],
        ["ZADD", 3, "1795905166143947", "m"],
        ["HINCRBY", 1, "n", "5"],
        ["DEL", 4],
    ]


def test_a_batch_is_one_call_with_its_groups_in_batch_order_and_keys_shared() -> None:
    later = Position("conversation.events", 1, 43)
    batch = [
        FencedOps("fence-a", AT, (RedisOp("HSET", "a", ("x", "1")),)),
        FencedOps("fence-b", AT, (RedisOp("HSET", "b", ("x", "1")),)),
        FencedOps("fence-a", later, (RedisOp("HSET", "a", ("x", "2")), RedisOp("RPUSH", "a2", ("y",)))),
    ]
    [(keys, argv)] = _encode_batch(batch)
    assert keys == ["a", "fence-a", "b", "fence-b", "a2"]
    records = orjson.loads(argv[0])
    assert [(r[0], r[1], r[2]) for r in records] == [
        (2, "conversation.events:1", "42"),
        (4, "conversation.events:1", "42"),
        (2, "conversation.events:1", "43"),
    ]
    assert records[2][3] == [["HSET", 1, "x", "2"], ["RPUSH", 5, "y"]]


def test_on_a_cluster_each_hash_slot_gets_its_own_calls_in_batch_order() -> None:
    later = Position("conversation.events", 1, 43)
    batch = [
        FencedOps("{t1}:fence", AT, (RedisOp("HSET", "{t1}:a", ("x", "1")),)),
        FencedOps("{t2}:fence", AT, (RedisOp("HSET", "{t2}:b", ("x", "1")),)),
        FencedOps("{t1}:fence", later, (RedisOp("HSET", "{t1}:c", ("x", "2")),)),
    ]
    calls = _encode_batch(batch, lambda key: key_slot(key.encode()))
    assert [keys for keys, _ in calls] == [["{t1}:a", "{t1}:fence", "{t1}:c"], ["{t2}:b", "{t2}:fence"]]
    assert [r[2] for r in orjson.loads(calls[0][1][0])] == ["42", "43"]
    assert {key_slot(k.encode()) for k in calls[0][0]} == {key_slot(b"t1")}  # a call never spans slots


def test_a_call_holds_at_most_per_call_groups_in_order() -> None:
    batch = [FencedOps("fence", Position("e", 0, n), (RedisOp("HINCRBY", "h", ("n", 1)),)) for n in range(5)]
    calls = _encode_batch(batch, per_call=2)
    assert [[r[2] for r in orjson.loads(argv[0])] for _, argv in calls] == [["0", "1"], ["2", "3"], ["4"]]


def test_op_on_the_fence_key_itself_refers_to_the_same_key_index() -> None:
    [(keys, argv)] = _encode_batch([FencedOps("fence", AT, (RedisOp("HSET", "fence", ("x", "y")),))])
    assert keys == ["fence"]
    record = orjson.loads(argv[0])[0]
    assert record[0] == 1 and record[3] == [["HSET", 1, "x", "y"]]


def test_group_without_ops_only_moves_the_fence() -> None:
    [(keys, argv)] = _encode_batch([FencedOps("fence", AT, ())])
    assert (keys, orjson.loads(argv[0])) == (["fence"], [[1, "conversation.events:1", "42", []]])
