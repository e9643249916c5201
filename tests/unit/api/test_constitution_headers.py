"""Policy headers (api/constitution.py): the precondition grammar, hostile values, and the 412 problem."""

from __future__ import annotations

import orjson
import pytest

from ledgerflow.api.constitution import (
    PreconditionFailed,
    check_precondition,
    header_of,
    header_value,
    required_hashes,
)
from ledgerflow.api.problems import problem_for
from ledgerflow.errors import ValidationError
from ledgerflow.kafka.reference import builtin_default_pack

PACK = builtin_default_pack()
H = PACK.constitution_hash


def test_absent_precondition_requires_nothing() -> None:
    assert required_hashes(None) == ()
    check_precondition((), PACK)


def test_one_or_several_hashes_are_accepted() -> None:
    assert required_hashes(f"sha256={H}") == (H,)
    assert required_hashes(f" sha256={'a' * 64} ,sha256={H}") == ("a" * 64, H)
    check_precondition(required_hashes(f"sha256={'a' * 64}, sha256={H}"), PACK)


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "*",
        H,
        f'"{H}"',
        f"sha256={H.upper()}",
        f"sha256={H[:-1]}",
        f"sha512={H}",
        f"sha256={H};v=1",
        ",".join([f"sha256={H}"] * 17),
        f"sha256={H},",
    ],
)
def test_malformed_preconditions_are_422(raw: str) -> None:
    with pytest.raises(ValidationError):
        required_hashes(raw)


def test_another_constitution_fails_with_a_412_naming_both_hashes() -> None:
    with pytest.raises(PreconditionFailed) as caught:
        check_precondition(("b" * 64,), PACK)
    response = problem_for(caught.value)
    body = orjson.loads(response.body)
    assert response.status_code == 412
    assert body["required"] == [f"sha256={'b' * 64}"] and body["in_force"] == f"sha256={H}"
    assert response.headers["Ledgerflow-Constitution"] == f"sha256={H}; version=0"


def test_the_header_names_the_signer_only_when_there_is_one() -> None:
    assert header_of(PACK) == {"Ledgerflow-Constitution": f"sha256={H}; version=0"}
    assert header_value(H, 3, "kid-1") == f"sha256={H}; version=3; signer=kid-1"
    assert header_of(PACK.with_version(2).signed_by("k"))["Ledgerflow-Constitution"].endswith(
        "version=2; signer=k"
    )
