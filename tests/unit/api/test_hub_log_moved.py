"""The SSE hub notices a log deleted and re-created under it (``Hub.advance``, ``logs_moved_back``):
its read position there named records that no longer exist, so the streams reading that partition
are ended (``Subscriber.log_moved``) and new ones start at the new log's position. Without it, a
stream registered with the old position never received the new log's first records, silently."""

from __future__ import annotations

from ledgerflow.api.hub import Hub, logs_moved_back
from ledgerflow.config import Settings

KEYS = [("d", 0), ("d", 1), ("e", 0), ("e", 1)]


def _hub() -> Hub:
    hub = Hub(Settings())
    hub.partitions = {hub._codes["e"]: 2, hub._codes["d"]: 2}
    hub._positions = {key: 10 for key in KEYS}
    return hub


def test_a_log_end_below_what_was_read_before_asking_means_the_log_was_recreated() -> None:
    read = {("e", 0): 10, ("e", 1): 10, ("d", 0): 4}
    ends = {("e", 0): 3, ("e", 1): 12, ("d", 0): 4, ("d", 9): 0}
    assert logs_moved_back(read, ends) == {("e", 0): 3}
    assert logs_moved_back(read, {("e", 0): 10, ("e", 1): 10, ("d", 0): 4}) == {}


def test_a_record_below_the_read_position_ends_the_streams_reading_that_partition() -> None:
    hub = _hub()
    tenant_stream, _ = hub.subscribe("acme", None, None)
    other = next(c for c in (f"c{i}" for i in range(100)) if hub.stream_keys("acme", c)[0] == ("e", 1))
    elsewhere, _ = hub.subscribe("acme", other, None)  # reads e1 and d1 only
    hub.advance(("e", 0), 10)  # the next record of the same log: nothing happens
    assert tenant_stream.log_moved is None and hub.subscribers == 2
    hub.advance(("e", 0), 0)  # offset 0 after 11: a new log
    assert tenant_stream.log_moved is not None and "e0" in tenant_stream.log_moved
    assert "re-created" in tenant_stream.log_moved
    assert elsewhere.log_moved is None
    assert hub.subscribers == 1  # the ended stream is forgotten at once
    assert hub.live_positions([("e", 0)]) == {("e", 0): 0}  # read on in the new log
    fresh, gaps = hub.subscribe("acme", None, None)
    assert fresh.start[("e", 0)] == 1 and gaps == {}  # a new stream takes the new log's next record
