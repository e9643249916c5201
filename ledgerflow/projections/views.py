"""Read-model views: what a reader sees, as pure functions of the raw Redis values."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from ledgerflow.timefmt import rfc3339

_INT_FIELDS = ("turns", "tokens")
_TIME_FIELDS = ("started_at", "updated_at")  # integer µs in Redis, RFC 3339 for readers


def conversation_view(
    fields: Mapping[bytes, bytes], turns: Sequence[bytes], decisions: Mapping[bytes, bytes]
) -> dict[str, Any]:
    """The conversation read model: its hash, its turns in order, each with its decision.

    ``turns`` in the hash is the projected counter; it is shown as ``turn_count`` and
    ``turns`` becomes the list of turns.
    """
    view: dict[str, Any] = {k.decode(): v.decode() for k, v in fields.items()}
    for name in _INT_FIELDS:
        if name in view:
            view[name] = int(view[name])
    for name in _TIME_FIELDS:
        if name in view:
            view[name] = rfc3339(int(view[name]))
    if "last_decision" in view:
        view["last_decision"] = orjson.loads(view["last_decision"])
    by_event = {k.decode(): orjson.loads(v) for k, v in decisions.items()}
    view["turn_count"] = view.pop("turns", 0)
    view["turns"] = [_turn(turn, by_event) for turn in map(orjson.loads, turns)]
    return view


def _turn(turn: dict[str, Any], by_event: Mapping[str, Any]) -> dict[str, Any]:
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
