"""The pure part of ``ledgerflow produce``'s delivery through an outage (``ledgerflow.delivery``):
one line per outage, capped exponential waits, giving up after ``retry_s``, and a recovery."""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque

import pytest

from ledgerflow.delivery import Outage, Sent, fault_text, take_acknowledged
from ledgerflow.errors import InfrastructureError


def test_an_outage_says_one_line_waits_longer_each_time_and_gives_up_at_its_deadline() -> None:
    outage = Outage(10.0, "127.0.0.1:9092")
    assert outage.failed(100.0, "KafkaConnectionError: refused") == 0.5
    assert outage.say == (
        "produce: Kafka at 127.0.0.1:9092 does not answer (KafkaConnectionError: refused); "
        "retrying for up to 10 s (--retry-for, LEDGERFLOW_PRODUCE_RETRY_S)"
    )
    waits = [outage.failed(100.0 + t, "x") for t in (1, 2, 3)]
    assert waits == [1.0, 2.0, 4.0]
    assert outage.say is None  # said once per outage
    assert outage.failed(108.0, "x") == 2.0  # never past the deadline (110)
    assert outage.failed(110.0, "x") is None  # give up
    error = outage.give_up("KafkaConnectionError: refused", 7)
    assert isinstance(error, InfrastructureError)
    assert str(error) == (
        "no Kafka broker at 127.0.0.1:9092 acknowledged an event for 10 s (KafkaConnectionError: refused); "
        "7 event(s) were published before it, the rest were not: start it (`ledgerflow stack status`) "
        "and run produce again, or allow longer with --retry-for"
    )


def test_an_outage_counts_from_the_oldest_unacknowledged_send() -> None:
    outage = Outage(60.0, "k:1")
    assert outage.failed(100.0, "Stalled: nothing acknowledged for 5 s", began=94.0) == 0.5
    assert outage.since == 94.0
    assert outage.failed(153.9, "x") == pytest.approx(0.1)
    assert outage.failed(154.0, "x") is None


def test_an_acknowledgement_ends_the_outage_and_the_next_one_starts_afresh() -> None:
    outage = Outage(60.0, "k:1")
    assert outage.acknowledged(5.0) is None  # no outage: nothing to say
    outage.failed(10.0, "x")
    outage.failed(11.0, "x")
    assert outage.acknowledged(22.5) == 12.5
    assert outage.acknowledged(23.0) is None
    assert outage.failed(200.0, "y") == 0.5  # first wait again
    assert outage.say is not None and "(y)" in outage.say


def test_no_retry_gives_up_at_the_first_fault() -> None:
    outage = Outage(0.0, "k:1")
    assert outage.failed(1.0, "x") is None
    assert outage.say is not None  # the line still says what happened


class KafkaConnectionError(Exception):
    pass


@pytest.mark.parametrize(
    ("exc", "text"),
    [
        (
            KafkaConnectionError("KafkaConnectionError: Unable to bootstrap"),
            "KafkaConnectionError: Unable to bootstrap",
        ),
        (KafkaConnectionError("no route"), "KafkaConnectionError: no route"),
        (TimeoutError(), "TimeoutError"),
        (OSError("a\nb"), "OSError: a b"),
    ],
)
def test_fault_text_names_the_type_once_on_one_line(exc: BaseException, text: str) -> None:
    assert fault_text(exc) == text


def test_a_failed_delivery_stays_in_flight_to_be_sent_again_and_the_ones_before_it_count() -> None:
    """The delivery loop popped the oldest send before reading its failure: the failed event was
    then neither counted nor sent again (the fault path re-sends what is still in flight)."""
    from ledgerflow.traffic import interleaved

    async def run() -> None:
        loop = asyncio.get_running_loop()
        events = list(interleaved(random.Random(7), ["acme"], 2, time.time_ns() // 1000))[:4]
        futures: list[asyncio.Future[object]] = [loop.create_future() for _ in events]
        in_flight = deque(Sent(e, f, 0.0) for e, f in zip(events, futures, strict=True))
        futures[0].set_result(None)
        futures[1].set_exception(KafkaConnectionError("broker gone"))
        futures[2].set_result(None)  # acknowledged, but behind the failed one
        taken, fault = take_acknowledged(in_flight)
        assert (taken, type(fault)) == (1, KafkaConnectionError)
        assert [s.event for s in in_flight] == events[1:]
        futures[1].exception()  # retrieved (the producer's done callback does this in ``deliver``)

        assert take_acknowledged(deque()) == (0, None)
        pending = deque([Sent(events[3], futures[3], 0.0)])
        assert take_acknowledged(pending) == (0, None) and len(pending) == 1  # not done yet: waits
        futures[3].cancel()
        taken, fault = take_acknowledged(pending)
        assert taken == 0 and fault is not None and "cancelled" in str(fault) and len(pending) == 1

    asyncio.run(run())
