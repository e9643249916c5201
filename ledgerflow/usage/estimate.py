"""Token estimation for events that carry no token count.

Heuristic: one token per four bytes of UTF-8, rounded up, and at least one token per
event (a message costs its framing even when empty). Four bytes per token is the usual
rule of thumb for English text with BPE tokenizers; non-Latin scripts take more bytes
per character in UTF-8, which pushes their estimate up, the safe direction for quotas.
"""

from __future__ import annotations

from ledgerflow.errors import ValidationError

BYTES_PER_TOKEN = 4


def estimate_tokens_from_len(utf8_len: int) -> int:
    """``max(1, ceil(utf8_len / 4))`` for a content of ``utf8_len`` UTF-8 bytes."""
    if utf8_len < 0:
        raise ValidationError(f"content length must be >= 0 bytes, got {utf8_len}")
    return max(1, -(-utf8_len // BYTES_PER_TOKEN))


def estimate_tokens(content: str) -> int:
    """Estimated tokens of ``content``: ``max(1, ceil(len(content.encode('utf-8')) / 4))``."""
    return estimate_tokens_from_len(len(content.encode("utf-8")))
