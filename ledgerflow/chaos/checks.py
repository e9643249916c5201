"""The after-run checks, pure: what the clients were told against what the log and the read
models hold. Each returns its discrepancies as one-line strings (none = the promise held)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ledgerflow.api import cursors
from ledgerflow.chaos.load import Ack

SHOWN = 10  # examples per check; the counts are always complete


@dataclass(frozen=True, slots=True)
class Logged:
    """A record on the log: ``key`` is the event id (a command's command id on training.commands);
    ``decides`` the event id a decision answers."""

    key: str
    type: str
    tenant: str
    subject: str
    partition: int
    offset: int
    decides: str | None = None


def _some(found: Sequence[str], what: str) -> list[str]:
    if not found:
        return []
    return [f"{len(found)} {what}: " + "; ".join(found[:SHOWN])]


def acknowledged_once(acks: Iterable[Ack], logged: Iterable[Logged]) -> list[str]:
    """Every acknowledged record is on the log exactly once, where its acknowledgement said."""
    where: dict[str, list[Logged]] = defaultdict(list)
    for record in logged:
        where[record.key].append(record)
    lost, doubled, moved = [], [], []
    for ack in acks:
        found = where.get(ack.key, [])
        if not found:
            lost.append(f"{ack.path} {ack.key} ({ack.tenant}/{ack.subject})")
        elif len(found) > 1:
            doubled.append(
                f"{ack.path} {ack.key} at " + ", ".join(f"{r.partition}@{r.offset}" for r in found)
            )
        elif ack.partition is not None and (found[0].partition, found[0].offset) != (
            ack.partition,
            ack.offset,
        ):
            moved.append(
                f"{ack.path} {ack.key} acknowledged at {ack.partition}@{ack.offset}, "
                f"on the log at {found[0].partition}@{found[0].offset}"
            )
    return (
        _some(lost, "acknowledged records not on the log")
        + _some(doubled, "acknowledged records on the log more than once")
        + _some(moved, "acknowledged records elsewhere than acknowledged")
    )


def one_decision_per_turn(
    events: Iterable[Logged], decisions: Iterable[Logged], turns_read: Mapping[tuple[str, str], int]
) -> list[str]:
    """Per conversation: its turns on the log = its decisions on the log = its turns in the read
    models; and no turn is decided twice."""
    turns: dict[tuple[str, str], set[str]] = defaultdict(set)
    for e in events:
        if e.type == "MessageSubmitted":
            turns[(e.tenant, e.subject)].add(e.key)
    decided: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for d in decisions:
        if d.decides is not None:
            decided[(d.tenant, d.subject)][d.decides] += 1
    missing, twice, stray, read = [], [], [], []
    for conv in sorted(set(turns) | set(decided)):
        got, want = decided.get(conv, Counter()), turns.get(conv, set())
        missing += [f"{conv[0]}/{conv[1]} turn {t}" for t in sorted(want - set(got))]
        twice += [f"{conv[0]}/{conv[1]} turn {t} ×{n}" for t, n in sorted(got.items()) if n > 1]
        stray += [f"{conv[0]}/{conv[1]} decision for {t}" for t in sorted(set(got) - want)]
        if turns_read.get(conv, 0) != len(want):
            read.append(
                f"{conv[0]}/{conv[1]}: {len(want)} turns on the log, "
                f"{turns_read.get(conv, 0)} in the read model"
            )
    return (
        _some(missing, "turns without a decision")
        + _some(twice, "turns decided more than once")
        + _some(stray, "decisions of turns not on the log")
        + _some(read, "conversations whose read model counts other turns than the log")
    )


def served_once(
    conversation: str, seen: Mapping[str, int], cursor: str | None, records: Mapping[str, Iterable[Logged]]
) -> list[str]:
    """Every record of ``conversation`` at or below the subscriber's final cursor was served to it
    exactly once, and nothing else was. ``records``: topic code (``e``, ``d``) → the records of
    this conversation on that topic."""
    served = cursors.decode(cursor) if cursor else {}
    want: Counter[str] = Counter()
    for code, logged in records.items():
        for r in logged:
            if r.offset <= served.get((code, r.partition), -1):
                want[r.key] += 1
    if want == Counter(seen):
        return []
    never = sorted(set(want) - set(seen))
    twice = sorted(k for k, n in seen.items() if n > 1)
    extra = sorted(set(seen) - set(want))
    return [
        f"SSE {conversation}: {len(never)} frames never served {never[:3]}, {len(twice)} served twice "
        f"{twice[:3]}, {len(extra)} beyond the cursor {extra[:3]} (cursor {cursor})"
    ]
