"""`ledgerflow training status --tenant T` refuses a tenant that cannot exist before reading
Redis, as `enable` and `disable` do (it answered "training disabled (version 0)", exit 0)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledgerflow.commands.training import status
from ledgerflow.config import Settings
from ledgerflow.errors import ValidationError

NOWHERE = Settings(kafka_bootstrap="127.0.0.1:9", redis_url="redis://127.0.0.1:9/0", state_dir=Path("."))


@pytest.mark.parametrize(
    ("tenant", "why"),
    [("", "tenant: must not be empty"), ("bad tenant!", "tenant: 'bad tenant!' is not an id")],
)
def test_a_tenant_outside_the_id_grammar_is_refused_before_redis_is_read(tenant: str, why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        status(NOWHERE, tenant)
