"""Model names at the edge: the registry's rule (``name_problem``) and no ``|``, the separator of
the usage read model's fields; refused (422) before anything is published."""

from __future__ import annotations

import pytest

from ledgerflow.api.edge_checks import check_edge_event, check_model_name
from ledgerflow.contracts.events import new_event
from ledgerflow.contracts.payloads import ConversationStarted, MessageSubmitted
from ledgerflow.errors import ValidationError


@pytest.mark.parametrize("model", ["evil|model", "|", "", "  ", "a\nb", "m" * 257, 7])
def test_a_bad_model_name_is_refused(model: object) -> None:
    with pytest.raises(ValidationError, match="model"):
        check_model_name("model", model)


def test_a_model_name_passes() -> None:
    assert check_model_name("model", "slm-1 (eu)") == "slm-1 (eu)"


@pytest.mark.parametrize(
    ("kind", "payload"),
    [
        ("MessageSubmitted", MessageSubmitted("t1", "user", "hi", "evil|model", None)),
        ("ConversationStarted", ConversationStarted("bo", "evil|model")),
    ],
)
def test_an_event_naming_a_model_with_the_separator_is_refused(
    kind: str, payload: MessageSubmitted | ConversationStarted
) -> None:
    event = new_event(
        kind,
        tenant="acme",
        subject="c1",
        payload=payload,
        producer="edge:alice",
        occurred_at_micros=1_700_000_000_000_000,
    )
    with pytest.raises(ValidationError, match=r"^payload.model 'evil\|model' must not contain '\|'"):
        check_edge_event(event)
