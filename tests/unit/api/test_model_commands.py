"""Model commands at the edge with an ``Idempotency-Key``: the command id is derived from the key's
scope and the request, so a retry after a 503 whose command still reached the log is that same
command (the models agent answers a command id once), not a second one."""

from __future__ import annotations

import pytest

from ledgerflow.api.models import keyed_command
from ledgerflow.contracts.payloads import RegisterModel, SetModelEnabled
from ledgerflow.errors import ValidationError


def _register(command_id: str, window: int = 8192) -> RegisterModel:
    return RegisterModel(command_id, "alice", "slm-1", "local", window, 0.0005, None, True, None)


def test_without_a_key_the_command_is_as_drawn() -> None:
    assert keyed_command(_register("c1"), "acme", None) == _register("c1")


def test_a_keyed_command_id_names_one_scope_and_request() -> None:
    first = keyed_command(_register("drawn-1"), "acme", "k")
    assert keyed_command(_register("drawn-2"), "acme", "k") == first  # a retry: the same command
    assert first.command_id != "drawn-1" and first.model == "slm-1"
    others = {
        keyed_command(_register("c", window=4096), "acme", "k").command_id,
        keyed_command(_register("c"), "globex", "k").command_id,
        keyed_command(_register("c"), "acme", "k2").command_id,
        keyed_command(SetModelEnabled("c", "alice", "slm-1", True, None), "acme", "k").command_id,
    }
    assert first.command_id not in others and len(others) == 4
    with pytest.raises(ValidationError, match="Idempotency-Key"):
        keyed_command(_register("c"), "acme", " ")
