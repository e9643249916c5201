"""Where a profile's samples are counted (``bench/profile.summarise``)."""

from __future__ import annotations

from pathlib import Path

from ledgerflow.bench.profile import LOOP, summarise

LOOP_DISPATCH = (
    "BaseEventLoop._run_once (asyncio/base_events.py:1922)",
    "Handle._run (asyncio/events.py:80)",
)
REBUILD = (
    "main (ledgerflow/bench/replay.py:89)",
    *LOOP_DISPATCH,
    "FreshReplay.run (ledgerflow/projections/fresh.py:106)",
)


def _line(count: int, *frames: str) -> str:
    return ";".join(frames) + f" {count}"


def _buckets(tmp_path: Path, lines: list[str]) -> dict[str, float]:
    collapsed = tmp_path / "stacks.txt"
    collapsed.write_text("\n".join(lines) + "\n")
    buckets: dict[str, float] = summarise(collapsed)["buckets"]
    return buckets


def test_the_rebuilds_own_python_is_not_counted_as_the_event_loop(tmp_path: Path) -> None:
    buckets = _buckets(
        tmp_path,
        [
            _line(
                6,
                *REBUILD,
                "Fold.records (ledgerflow/projections/fold.py:89)",
                "_Batch.admit (ledgerflow/projections/fold.py:195)",
            ),
            _line(2, *REBUILD, "projectable (ledgerflow/projections/rebuild.py:212)"),
            _line(
                2,
                *LOOP_DISPATCH,
                "write (ledgerflow/projections/freshwrite.py:85)",
                "_calls (ledgerflow/projections/freshwrite.py:112)",
            ),
        ],
    )
    assert buckets == {"projection rebuild (fold, batch loop, write packing)": 1.0}


def test_a_decisions_hash_check_and_a_redis_socket_write_keep_their_components(tmp_path: Path) -> None:
    buckets = _buckets(
        tmp_path,
        [
            _line(
                1,
                *REBUILD,
                "projectable (ledgerflow/projections/rebuild.py:212)",
                "integrity_problem (ledgerflow/projections/verify.py:36)",
                "event_hash (ledgerflow/contracts/eventhash.py:54)",
                "_digest (ledgerflow/contracts/eventhash.py:94)",
            ),
            _line(
                1,
                *LOOP_DISPATCH,
                "_send_on_open_writer (ledgerflow/redisclient.py:222)",
                "StreamWriter.writelines (asyncio/streams.py:335)",
            ),
            _line(2, *LOOP_DISPATCH, "_SelectorSocketTransport._read_ready (asyncio/selector_events.py:990)"),
        ],
    )
    assert buckets == {
        "hash chain (RFC 8785 canonical JSON, SHA-256)": 0.25,
        "Redis client (packing, parsing, I/O)": 0.25,
        LOOP: 0.5,
    }
