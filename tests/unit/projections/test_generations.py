"""The pure parts of `projections rebuild`'s generations: names and the one-line failure."""

from __future__ import annotations

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError

from ledgerflow.projections.generations import new_generation, redis_failed


def test_generations_started_in_the_same_millisecond_differ() -> None:
    names = {new_generation() for _ in range(1000)}
    assert len(names) == 1000
    assert all(name.startswith("g") and ":" not in name for name in names)


def test_a_refusal_is_named_by_its_code_on_one_line() -> None:
    refused = OutOfMemoryError("OOM command not allowed when used memory > 'maxmemory'.")
    outcome = "nothing was switched; the new generation g1 was deleted"
    line = redis_failed("redis://r:6379/0", refused, outcome)
    assert line == (
        "Redis at redis://r:6379/0 refuses commands (OOM) during the rebuild (nothing was switched; the new "
        "generation g1 was deleted): fix Redis (`ledgerflow stack status`, its memory) and rebuild again"
    )


def test_a_redis_that_fails_otherwise_is_named_with_its_error() -> None:
    line = redis_failed("redis://r:6379/0", RedisConnectionError("Connection refused"), "…")
    assert "Redis at redis://r:6379/0 failed (ConnectionError: Connection refused) during the rebuild" in line
