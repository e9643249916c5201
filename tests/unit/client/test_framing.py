"""The client's pure parts: topic, key and framing of a record; the edge's body; the token's tenant."""

from __future__ import annotations

import base64
import json

import pytest

from ledgerflow.client.edge_http import token_tenant
from ledgerflow.client.framing import base_topic, edge_body, kafka_record
from ledgerflow.client.producer import transport_for
from ledgerflow.contracts import codec
from ledgerflow.contracts.events import Event, new_event
from ledgerflow.contracts.payloads import EnableTraining, MessageSubmitted
from ledgerflow.errors import AuthError, ValidationError

NOW = 1_795_000_000_000_000


def turn(subject: str = "conv-1") -> Event:
    payload = MessageSubmitted("t1", "user", "hello", "slm-1")
    return new_event(
        "MessageSubmitted",
        tenant="acme",
        subject=subject,
        payload=payload,
        producer="app",
        occurred_at_micros=NOW,
    )


def jwt(claims: object) -> str:
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"eyJhbGciOiJFZERTQSJ9.{body}.c2ln"


def test_a_record_is_keyed_by_subject_framed_as_single_object_and_prefixed() -> None:
    event = turn("conv-7")
    record = kafka_record(event, "t42.")
    assert record.topic == "t42.conversation.events"
    assert record.key == b"conv-7"
    assert record.value[:2] == b"\xc3\x01" and codec.decode(record.value) == event


def test_each_type_goes_to_the_topic_that_carries_it() -> None:
    assert base_topic("EnableTraining") == "training.commands"
    assert base_topic("RulePackPublished") == "policy.rules"
    with pytest.raises(ValidationError, match="carried by no topic"):
        base_topic("Nope")


def test_the_edge_body_leaves_out_what_the_edge_sets_and_reads_back_as_the_same_event() -> None:
    event = turn()
    body = edge_body(event)
    assert "producer" not in body and not {"sequence", "prev_hash", "hash", "trace_id"} & set(body)
    back = Event.from_json(body, now_micros=NOW, default_producer="app")
    assert back == event


def test_the_edge_body_refuses_types_the_edge_does_not_ingest() -> None:
    command = new_event(
        "EnableTraining",
        tenant="acme",
        subject="acme",
        payload=EnableTraining("cmd-1", "bo", "why"),
        producer="app",
        occurred_at_micros=NOW,
    )
    with pytest.raises(ValidationError, match="cannot be published through the edge"):
        edge_body(command)


def test_the_tenant_is_read_from_the_token_and_a_token_without_one_is_refused() -> None:
    assert token_tenant(jwt({"tenant": "acme", "sub": "x"})) == "acme"
    for bad in ("not-a-jwt", jwt({"sub": "x"}), jwt(["tenant"]), "a.!!!.c"):
        with pytest.raises(AuthError):
            token_tenant(bad)


@pytest.mark.parametrize(
    ("url", "token", "prefix", "message"),
    [
        ("127.0.0.1:9092", None, "", "neither kafka://"),
        ("kafka://", None, "", "neither kafka://"),
        ("ftp://edge", "t", "", "neither kafka://"),
        ("http://edge", None, "", "needs a token"),
        ("http://edge", "t", "p.", "the edge has its own"),
    ],
)
def test_the_url_picks_the_transport_and_bad_combinations_are_refused(
    url: str, token: str | None, prefix: str, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        transport_for(url, token=token, topic_prefix=prefix, client=None)
