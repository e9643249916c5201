"""Read-model views: what a reader sees, as pure functions of the raw Redis values."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

_INT_FIELDS = ("turns", "tokens", "started_at", "updated_at")


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
    if "last_decision" in view:
        view["last_decision"] = orjson.loads(view["last_decision"])
    by_event = {k.decode(): orjson.loads(v) for k, v in decisions.items()}
    view["turn_count"] = view.pop("turns", 0)
    view["turns"] = [
        {**turn, "decision": by_event.get(turn["event_id"])} for turn in map(orjson.loads, turns)
    ]
    return view
