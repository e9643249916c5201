"""Which edge answers the client retries, and the error each one ends as."""

from __future__ import annotations

import httpx

from ledgerflow.client.edge_http import error_for, retry_delay, retryable
from ledgerflow.errors import AuthError, InfrastructureError, ValidationError


def answer(status: int, **headers: str) -> httpx.Response:
    return httpx.Response(status, headers=headers, json={"detail": "why"})


def test_the_edge_saying_later_is_retried() -> None:
    for status in (429, 502, 503, 504):
        assert retryable(answer(status))
    # The first request with this event id or key is still publishing (api/idempotency.py InFlight).
    assert retryable(answer(409, **{"Retry-After": "1"}))
    for status in (400, 401, 403, 404, 409, 413, 422, 500):
        assert not retryable(answer(status))


def test_each_refusal_ends_as_its_error() -> None:
    assert isinstance(error_for(answer(409, **{"Retry-After": "1"}), "x"), InfrastructureError)
    assert isinstance(error_for(answer(409), "x"), ValidationError)
    assert isinstance(error_for(answer(422), "x"), ValidationError)
    assert isinstance(error_for(answer(503), "x"), InfrastructureError)
    refused = error_for(answer(403), "publishing an event")
    assert isinstance(refused, AuthError) and str(refused) == "publishing an event: HTTP 403: why"


def test_retry_after_is_waited_up_to_the_cap() -> None:
    assert retry_delay(answer(409, **{"Retry-After": "1"}), 0) == 1.0
    assert retry_delay(answer(503, **{"Retry-After": "30"}), 0) == 5.0
    assert retry_delay(None, 2) == 0.8
