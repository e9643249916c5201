"""Read-model views: what a reader sees, as pure functions of the raw Redis values."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

from ledgerflow.redisvalues import Reply, text
from ledgerflow.timefmt import rfc3339

_INT_FIELDS = ("turns", "tokens")
_TIME_FIELDS = ("started_at", "updated_at")  # integer µs in Redis, RFC 3339 for readers


def parse_turns(raw: Iterable[Reply]) -> list[dict[str, Any]]:
    """Entries of a conversation's turn list (JSON, ``turn_entry``) as dicts."""
    return [orjson.loads(entry) for entry in raw]


def decisions_by_event(event_ids: Sequence[str], replies: Sequence[Reply | None]) -> dict[str, Any]:
    """The decisions ``HMGET <decisions> *event_ids`` answered, by input event id (none: absent)."""
    return {e: orjson.loads(r) for e, r in zip(event_ids, replies, strict=True) if r is not None}


def conversation_view(
    fields: Mapping[Reply, Reply], turns: Sequence[Mapping[str, Any]], decisions: Mapping[str, Any]
) -> dict[str, Any]:
    """The conversation read model: its hash and ``turns`` (``parse_turns``), each with its
    decision from ``decisions`` (by input event id, ``decisions_by_event``).

    ``turns`` in the hash is the projected counter; it is shown as ``turn_count`` and
    ``turns`` becomes the list of turns given.
    """
    view: dict[str, Any] = {text(k): text(v) for k, v in fields.items()}
    for name in _INT_FIELDS:
        if name in view:
            view[name] = int(view[name])
    for name in _TIME_FIELDS:
        if name in view:
            view[name] = rfc3339(int(view[name]))
    if "last_decision" in view:
        view["last_decision"] = orjson.loads(view["last_decision"])
    view["turn_count"] = view.pop("turns", 0)
    view["turns"] = [_turn(turn, decisions) for turn in turns]
    return view


def _turn(turn: Mapping[str, Any], by_event: Mapping[str, Any]) -> dict[str, Any]:
    out = {**turn, "decision": by_event.get(turn["event_id"])}
    if isinstance(out.get("occurred_at"), int):
        out["occurred_at"] = rfc3339(out["occurred_at"])
    return out


def training_view(tenant: str, view: Mapping[str, str]) -> dict[str, Any]:
    """The training-mode read model of ``tenant`` as readers see it (edge and ``ledgerflow training``)."""
    expires = view.get("expires_at") or None
    return {
        "tenant": tenant,
        "state": view.get("state", "disabled"),
        "version": int(view.get("version", 0)),
        "owner": view.get("owner"),
        "reason": view.get("reason"),
        "expires_at": rfc3339(int(expires)) if expires else None,
        "last_rejection": view.get("last_rejection"),
    }
