"""Detectors: the tricky cases each one must get right (and the look-alikes it must not flag)."""

from __future__ import annotations

import pytest

from ledgerflow.policy.detectors import (
    DETECTORS,
    find_emails,
    find_ibans,
    find_payment_cards,
    find_phones,
    find_secrets,
    iban_valid,
    luhn_valid,
)


def matched(spans: tuple[tuple[int, int], ...], text: str) -> list[str]:
    return [text[start:end] for start, end in spans]


# -- email -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "first.last+tag@mail.example.co.uk",
        "jane@example.com",
        "ops-team_1%x@sub.domain.example.org",
        "a@b.io",
    ],
)
def test_email_found_with_plus_tags_and_subdomains(address: str) -> None:
    text = f"write to <{address}>, thanks"
    assert matched(find_emails(text), text) == [address]


@pytest.mark.parametrize(
    "text",
    [
        "a@b",
        "user@localhost",
        "@mention in a chat",
        "price: 3 @ 4.50",
        "trailing.dot.@example.com",
        "x@example.c0m",
    ],
)
def test_email_not_found_in_look_alikes(text: str) -> None:
    assert find_emails(text) == ()


def test_email_spans_exclude_surrounding_punctuation() -> None:
    text = "(.jane@example.com). And bob@example.org."
    assert matched(find_emails(text), text) == ["jane@example.com", "bob@example.org"]


# -- phone -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "number",
    [
        "+44 20 7946 0958",
        "+1 (555) 123-4567",
        "+4915112345678",
        "+33 6 12 34 56 78",
        "(555) 123-4567",
        "555-123-4567",
        "555.123.4567",
        "555 123 4567",
        "1-800-555-0199",
    ],
)
def test_phone_found_in_international_and_us_formats(number: str) -> None:
    text = f"call me at {number} tomorrow"
    assert matched(find_phones(text), text) == [number]


@pytest.mark.parametrize(
    "text",
    [
        "released on 2024-01-15",
        "due 01/15/2024 at noon",
        "version 10.0.19041.1 and 1.2.3",
        "order #1234567890 shipped",
        "order ORD-555-123-4567 shipped",
        "invoice 2024-123-4567",
        "ratio 555-123-45678",
        "sum 2+3 = 5",
        "tiny +12 3",
        "mixed separators 555-123.4567",
    ],
)
def test_phone_not_found_in_dates_versions_and_order_numbers(text: str) -> None:
    assert find_phones(text) == ()


def test_phone_international_and_us_in_one_text_are_sorted_and_not_duplicated() -> None:
    text = "US 555-123-4567 or UK +44 20 7946 0958 or +1 555-765-4321"
    assert matched(find_phones(text), text) == [
        "555-123-4567",
        "+44 20 7946 0958",
        "+1 555-765-4321",
    ]


# -- payment card ------------------------------------------------------------------


def test_luhn_accepts_known_test_numbers_and_refuses_one_digit_changed() -> None:
    assert luhn_valid("4111111111111111")
    assert luhn_valid("378282246310005")
    assert not luhn_valid("4111111111111112")
    assert not luhn_valid("")
    assert not luhn_valid("4111-1111")


@pytest.mark.parametrize(
    "card",
    [
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "4111111111111111",
        "3782 822463 10005",
        "5555555555554444",
        "4222222222222",
    ],
)
def test_payment_card_found_with_spaces_dashes_and_luhn(card: str) -> None:
    text = f"my card is {card}, exp 12/27"
    assert matched(find_payment_cards(text), text) == [card]


@pytest.mark.parametrize(
    "text",
    [
        "order 4111111111111112 failed Luhn",
        "order 4111 1111 1111 1112",
        "zeros 0000 0000 0000 0000",
        "mixed 4111 1111-1111 1111",
        "odd groups 41 1111 1111 1111 11",
        "too short 411111111111",
        "part of an id ORD-4111111111111111",
    ],
)
def test_payment_card_not_found_when_luhn_or_format_fails(text: str) -> None:
    assert find_payment_cards(text) == ()


def test_payment_card_followed_by_another_number_keeps_the_card_span() -> None:
    text = "card 4111 1111 1111 1111 123 ok"
    assert matched(find_payment_cards(text), text) == ["4111 1111 1111 1111"]


# -- IBAN -------------------------------------------------------------------------


def test_iban_checksum_valid_and_one_digit_changed_invalid() -> None:
    assert iban_valid("GB82 WEST 1234 5698 7654 32")
    assert iban_valid("gb82west12345698765432")
    assert not iban_valid("GB82 WEST 1234 5698 7654 33")
    assert not iban_valid("GB82 WEST 1234 5698 7654 3")  # wrong length for GB


@pytest.mark.parametrize(
    "iban",
    [
        "GB82 WEST 1234 5698 7654 32",
        "GB82WEST12345698765432",
        "DE89 3704 0044 0532 0130 00",
        "FR14 2004 1010 0505 0001 3M02 606",
        "NL91ABNA0417164300",
    ],
)
def test_iban_found_compact_or_grouped(iban: str) -> None:
    text = f"pay to {iban} AND NOTHING ELSE"
    assert matched(find_ibans(text), text) == [iban]


@pytest.mark.parametrize(
    "text",
    [
        "pay to GB82 WEST 1234 5698 7654 33 please",
        "pay to GB82WEST12345698765432X please",
        "part numbers AB12 CDEF 3456 7890 12",
    ],
)
def test_iban_not_found_when_checksum_or_boundary_fails(text: str) -> None:
    assert find_ibans(text) == ()


# -- secrets ----------------------------------------------------------------------

_JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ."
    "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)


@pytest.mark.parametrize(
    "secret",
    [
        "AKIAIOSFODNN7EXAMPLE",
        "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
        "xoxb-123456789012-abcdefABCDEF",
        "sk-proj-abcdefghijklmnopqrstuvwx1234",
        "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
        "-----BEGIN RSA PRIVATE KEY-----",
        _JWT,
    ],
)
def test_secret_shapes_found(secret: str) -> None:
    text = f"here it is: {secret} keep it safe"
    assert matched(find_secrets(text), text) == [secret]


def test_secret_whole_pem_block_is_one_span() -> None:
    block = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\nkqhkiG9w0BAQEF\n-----END PRIVATE KEY-----"
    text = f"key:\n{block}\nbye"
    assert matched(find_secrets(text), text) == [block]


@pytest.mark.parametrize(
    "text",
    [
        "the AKIA prefix alone",
        "XAKIAIOSFODNN7EXAMPLE is embedded",
        "risk-assessment-for-the-quarterly-review",
        "ghp_short",
        "task-management and desk-booking",
        "eyJ is how base64 JSON starts",
    ],
)
def test_secret_look_alikes_not_found(text: str) -> None:
    assert find_secrets(text) == ()


def test_detectors_registry_names_match_schema_enum() -> None:
    assert set(DETECTORS) == {"email", "phone", "payment_card", "iban", "secret"}


def test_detector_spans_are_sorted() -> None:
    text = "x sk-abcdefghijklmnopqrstuvwxyz AKIAIOSFODNN7EXAMPLE " + _JWT
    spans = find_secrets(text)
    assert list(spans) == sorted(spans)
    assert len(spans) == 3


def test_phone_long_digit_runs_after_plus_are_rejected_without_backtracking() -> None:
    import time

    text = ("+1" + "2" * 40 + " ") * 200
    started = time.perf_counter()
    assert find_phones(text) == ()
    # Before the possessive quantifiers this took about 4 ms per "+" (0.8 s here).
    assert time.perf_counter() - started < 0.25
