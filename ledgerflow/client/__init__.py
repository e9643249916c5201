"""ledgerflow's client library: publish events, follow streams, ask for decisions.

- ``AsyncProducer`` / ``Producer``: publish typed events straight to Kafka (``kafka://host:port``)
  or through the edge (``http(s)://…``), keyed and framed as ledgerflow's writers do; answers
  each event's position (``Published``).
- ``Subscriber``: follow a conversation or the tenant stream with resume (``Last-Event-ID``),
  reauth through a token callback, and events decoded into the contracts' dataclasses.
- ``Decisions``: ``step`` (publish a turn, get its decision) with an idempotency key.

See docs/client.md.
"""

from __future__ import annotations

from ledgerflow.client.decisions import Decisions, StepDecision, StepResult
from ledgerflow.client.edge_http import TokenSource
from ledgerflow.client.producer import AsyncProducer
from ledgerflow.client.records import Notice, Published, Received
from ledgerflow.client.subscriber import Subscriber
from ledgerflow.client.sync import Producer

__all__ = [
    "AsyncProducer",
    "Decisions",
    "Notice",
    "Producer",
    "Published",
    "Received",
    "StepDecision",
    "StepResult",
    "Subscriber",
    "TokenSource",
]
