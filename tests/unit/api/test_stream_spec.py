"""The stream's ``conversation_id`` is documented with the limit the server enforces (the id
grammar's ``MAX_ID_LENGTH``, 128), not 512."""

from __future__ import annotations

import pytest

from ledgerflow.api.openapi import document
from ledgerflow.contracts.ids import MAX_ID_LENGTH, check_id
from ledgerflow.errors import ValidationError


def test_the_documented_length_of_a_streams_conversation_id_is_the_enforced_one() -> None:
    op = document()["paths"]["/v1/conversation/stream"]["get"]
    (param,) = [p for p in op["parameters"] if p["name"] == "conversation_id"]
    assert param["schema"]["maxLength"] == MAX_ID_LENGTH == 128
    check_id("conversation_id", "c" * MAX_ID_LENGTH)
    with pytest.raises(ValidationError):
        check_id("conversation_id", "c" * (MAX_ID_LENGTH + 1))
