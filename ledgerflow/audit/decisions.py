"""Re-deriving every policy decision bit for bit, and finding turns without one (pure: no I/O).

The policy agent writes exactly ``codec.encode(decide(event, value, pack, training, head))``
(``ledgerflow.policy.wire``). Given the input record's bytes, the rule pack the decision
names (tenant or ``*``, version, constitution hash), the training state it records and the
conversation's previous decision (chain head), the auditor computes the same bytes again
and compares. Per input partition (decisions are co-partitioned with their inputs):

1. ``add_input`` every record of ``conversation.events`` partition *p* that the agent
   would decide (decodes, validates, is a turn). A second record with an ``event_id``
   already seen in the partition is a *duplicate delivery* (a producer retrying past the
   edge): counted, not expected to be decided again.
2. ``feed`` every record of ``policy.decisions`` partition *p* in offset order. The
   decision answers the delivery its ``lf-input`` header names (else the first undecided
   delivery of its ``input_event_id``): a decision with no such input is ``forged``, a
   second one for the same delivery is ``duplicate``, an input hash that differs is
   ``input-hash``, bytes that do not re-derive are ``altered``. A decision of a later
   delivery of an event already decided (a duplicate the agent's dedupe window no longer
   held) is counted as ``decided again``, not a finding.
3. ``finish``: a turn none of whose deliveries has a decision is ``missing`` — when a later
   turn of the partition was decided, or when it was written more than the grace period
   before the audit started — unless the agent dead-lettered it (``dead_lettered``).
   Other undecided turns are *pending* (the agent has not reached them yet): counted.

Re-deriving a decision that raises anything but a ``LedgerflowError`` (a bug the input
triggers in the evaluation) is ``underivable`` at that decision, with the exception's type and
its message on one line (``cut_message``: every line joined, at most ``MAX_ERROR_CHARS``): the
policy agent dead-letters such a turn and goes on, and so does the audit.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

from ledgerflow.audit.report import Finding
from ledgerflow.contracts import codec
from ledgerflow.contracts.chain import ChainHead, decision_chain_key
from ledgerflow.contracts.events import Event
from ledgerflow.contracts.payloads import MessageSubmitted, PolicyDecision
from ledgerflow.errors import LedgerflowError
from ledgerflow.policy import NO_MODELS, ModelCatalog, RulePack, TrainingState
from ledgerflow.policy.wire import chain_key, decide, head_after, input_hash, turn_of
from ledgerflow.projections.ops import Position

DEFAULT_TENANT = "*"
MAX_FIELDS_SHOWN = 4
MAX_ERROR_CHARS = 200

Derive = Callable[[Event, bytes, RulePack, TrainingState, ChainHead | None, ModelCatalog], Event | None]
"""How a decision is derived (``policy.wire.decide``): input, its bytes, pack, training, head, registry."""


@dataclass(frozen=True, slots=True)
class PackBook:
    """Every rule pack ever published, by (tenant, version); ``default`` is ``*`` version 0."""

    history: Mapping[tuple[str, int], RulePack]
    default: RulePack

    def candidates(self, tenant: str, version: int, constitution: str) -> list[RulePack]:
        """Packs a decision of ``tenant`` recording ``version`` may have used, best first."""
        found = [self.history.get((tenant, version)), self.history.get((DEFAULT_TENANT, version))]
        if version == 0:
            found.append(self.default)
        packs = [p for p in found if p is not None]
        return sorted(packs, key=lambda p: p.constitution_hash != constitution)


@dataclass(frozen=True, slots=True)
class _Derived:
    """A decision record re-derived before its bytes were decoded (``rederive_logged``), and
    the pack, training state and model registry it was derived with."""

    record: Event
    pack: RulePack
    training: TrainingState
    models: ModelCatalog


@dataclass(slots=True)
class _Input:
    at: Position
    event: Event
    value: bytes
    timestamp_ms: int | None = None
    decided: Position | None = None


class DecisionCheck:
    """Walks one input partition's turns and its decisions; see the module docstring."""

    def __init__(
        self,
        packs: PackBook,
        training: Mapping[tuple[str, int], bool] | None = None,
        *,
        overdue_before_ms: int | None = None,
        models: Mapping[tuple[str, int], ModelCatalog] | None = None,
        derive: Derive = decide,
    ) -> None:
        """``training``: (tenant, version) → enabled of every accepted training transition, or
        None to skip checking the recorded training state against ``training.audit``.
        ``overdue_before_ms``: a turn whose record timestamp is older (ms since the epoch) must
        be decided even if no later turn was; None: only the later-turn rule.
        ``models``: (tenant, version) → the model registry at that version (``models.audit``).
        ``derive``: the policy agent's derivation (``decide``; another one in tests)."""
        self._packs = packs
        self._derive = derive
        self._models = models or {}
        self._training = training
        self._overdue_before_ms = overdue_before_ms
        self._inputs: dict[str, list[_Input]] = {}  # event id -> its deliveries, in offset order
        self._by_offset: dict[int, _Input] = {}
        self._heads: dict[str, ChainHead] = {}
        self._last_decided = -1
        # tenant -> the pack, training state and registry its last decision re-derived with
        self._last_used: dict[str, tuple[RulePack, TrainingState, ModelCatalog]] = {}
        self._derived: _Derived | None = None
        self.dead_lettered: dict[int, set[str]] = {}
        """Input offsets of this partition the DLQ names, each with the SHA-256s of the values its
        letters hold (set by the caller; ``letters_name`` says whether one holds the turn there)."""
        self.rederived = False
        """Whether the last record fed re-derived bit for bit."""
        self.turns = self.decisions = self.verified = self.pending = 0
        self.duplicate_deliveries = self.decided_again = self.turns_dead_lettered = 0

    def _catalog(self, tenant: str, version: int | None) -> ModelCatalog:
        """The registry a decision recording ``version`` read (an unknown one re-derives as empty)."""
        if version is None:
            return NO_MODELS
        return self._models.get((tenant, version)) or ModelCatalog(version, frozenset())

    def add_input(self, at: Position, event: Event, value: bytes, timestamp_ms: int | None = None) -> None:
        if turn_of(event) is None:
            return
        source = _Input(at, event, value, timestamp_ms)
        self._by_offset[at.offset] = source
        deliveries = self._inputs.setdefault(event.event_id, [])
        if deliveries:
            self.duplicate_deliveries += 1
        else:
            self.turns += 1
        deliveries.append(source)

    def rederive_logged(self, value: bytes, input_offset: int | None) -> Event | None:
        """The decision record in ``value`` without decoding it, when the input its ``lf-input``
        header names (``input_offset``), decided with the pack, training state and model
        registry of the tenant's previous re-derived decision, gives ``value`` bit for bit;
        else None (decode it). Pass the record to ``feed`` next: it checks it as a decoded one,
        and counts this re-derivation only if the record names that pack (first), state and registry.

        Bytes equal to ``codec.encode(record)`` decode to ``record``, so the record is what
        decoding would give; a decision costs its decode less (~12 µs of ~60)."""
        self._derived = None
        source = None if input_offset is None else self._by_offset.get(input_offset)
        if source is None:
            return None
        used = self._last_used.get(source.event.tenant)
        if used is None:
            return None
        pack, training, models = used
        head = self._heads.get(decision_chain_key(source.event.tenant, source.event.subject))
        try:
            again = self._derive(source.event, source.value, pack, training, head, models)
            if again is None or codec.encode(again) != value:
                return None
        except Exception:  # decoded and fed as any other: the re-derivation there says why
            return None
        self._derived = _Derived(again, pack, training, models)
        return again

    def feed(
        self, at: Position, record: Event, value: bytes, input_offset: int | None = None
    ) -> list[Finding]:
        """Check one decision record against its input; the findings it raises.

        ``input_offset``: the decision's ``lf-input`` header (the input offset it answers)."""
        self.rederived = False
        derived, self._derived = self._derived, None
        if derived is not None and derived.record is not record:
            derived = None
        payload = record.payload
        if not isinstance(payload, PolicyDecision):
            return [_finding("forged", at, record.subject, f"a {record.type} record is not a decision")]
        self.decisions += 1
        deliveries = self._inputs.get(payload.input_event_id, [])
        if input_offset is not None and input_offset in self._by_offset:
            source: _Input | None = self._by_offset[input_offset]
            if source is not None and source.event.event_id != payload.input_event_id:
                source = None
        else:
            source = next((d for d in deliveries if d.decided is None), deliveries[0] if deliveries else None)
        if source is None:
            why = (
                f"no MessageSubmitted {payload.input_event_id} in the input partition co-partitioned "
                "with this one: a decision with no input (produced from outside the policy agent)"
            )
            return [_finding("forged", at, record.subject, why)]
        if source.decided is not None:
            why = (
                f"input {payload.input_event_id} at {_where(source.at)} was already decided at "
                f"{_where(source.decided)}: one turn, two decisions (redelivered without the offset check, "
                "or inserted)"
            )
            return [_finding("duplicate", at, record.subject, why)]
        if any(d.decided is not None for d in deliveries):
            self.decided_again += 1  # a later delivery of a decided event: not tampering
        source.decided = at
        self._last_decided = max(self._last_decided, source.at.offset)
        found = self._check_inputs(at, record, payload, source)
        mismatch = self._rederive(at, record, payload, source, value, derived)
        return found if mismatch is None else [*found, mismatch]

    def finish(self) -> list[Finding]:
        """Turns never decided (``decision.missing``); forgets this partition's inputs."""
        found = []
        for event_id, deliveries in self._inputs.items():
            if any(d.decided is not None for d in deliveries):
                continue
            source = deliveries[0]
            if any(letters_name(self.dead_lettered.get(d.at.offset), d.value) for d in deliveries):
                self.turns_dead_lettered += 1
                continue
            overdue = (
                self._overdue_before_ms is not None
                and source.timestamp_ms is not None
                and source.timestamp_ms < self._overdue_before_ms
            )
            if source.at.offset > self._last_decided and not overdue:
                self.pending += 1
                continue
            turn = source.event.payload
            turn_id = turn.turn_id if isinstance(turn, MessageSubmitted) else "?"
            if source.at.offset < self._last_decided:
                after = f"although input offset {self._last_decided} after it was decided"
            else:
                after = "although it was written before the audit's grace period"
            why = f"turn {turn_id} (MessageSubmitted {event_id}) has no decision, {after}: a lost decision"
            found.append(
                Finding(
                    "decision.missing",
                    source.at.topic,
                    source.at.partition,
                    source.at.offset,
                    source.event.subject,
                    why,
                )
            )
        self._inputs.clear()
        self._by_offset.clear()
        self._heads.clear()
        self._derived = None
        self.dead_lettered = {}
        self._last_decided = -1
        return found

    def _check_inputs(
        self, at: Position, record: Event, payload: PolicyDecision, source: _Input
    ) -> list[Finding]:
        found = []
        actual = input_hash(source.value)
        if payload.input_hash != actual:
            why = (
                f"records input hash {str(payload.input_hash)[:16]}… but the input at {_where(source.at)} "
                f"hashes to {actual[:16]}…: the input or the decision was changed"
            )
            found.append(_finding("input-hash", at, record.subject, why))
        state = (payload.training_version, payload.training_enabled)
        if self._training is not None and state != (0, False):
            known = self._training.get((record.tenant, payload.training_version))
            if known is None or known != payload.training_enabled:
                why = (
                    f"records training {'on' if payload.training_enabled else 'off'} at version "
                    f"{payload.training_version}, a state tenant {record.tenant!r} never had "
                    "in training.audit"
                )
                found.append(_finding("training-state", at, record.subject, why))
        return found

    def _rederive(
        self,
        at: Position,
        record: Event,
        payload: PolicyDecision,
        source: _Input,
        value: bytes,
        derived: _Derived | None = None,
    ) -> Finding | None:
        """None if ``record`` re-derives bit for bit with a pack it names (``candidates``), the
        training state and the model registry it records; else the finding. ``derived``: the
        record was already re-derived (``rederive_logged``) from ``source``, this chain's head
        and the pack, state and registry there: it counts if they are the ones named here and
        the pack is the first candidate (the one the loop would try first)."""
        packs = self._packs.candidates(record.tenant, payload.rule_pack_version, payload.constitution_hash)
        head = self._heads.get(chain_key(record))
        if not packs:
            self._follow_recorded(record)
            why = (
                f"rule pack version {payload.rule_pack_version} of tenant {record.tenant!r} (or '*') "
                "is not in policy.rules: the decision cannot be re-derived (was the pack compacted away?)"
            )
            return _finding("pack-missing", at, record.subject, why)
        attempts: list[Event] = []
        try:
            training = TrainingState(payload.training_enabled, payload.training_version)
            models = self._catalog(record.tenant, payload.models_version)
            if (
                derived is not None
                and derived.training == training
                and derived.models == models
                and packs[0] is derived.pack  # the pack the loop below tries first: the same outcome
            ):
                self._verified(derived.record, derived.pack, training, models)
                return None
            for pack in packs:
                again = self._derive(source.event, source.value, pack, training, head, models)
                if again is None:
                    break
                if codec.encode(again) == value:
                    self._verified(again, pack, training, models)
                    return None
                attempts.append(again)
        except LedgerflowError as exc:
            self._follow_recorded(record)
            return _finding("altered", at, record.subject, f"cannot be re-derived: {exc}")
        except Exception as exc:  # one turn that breaks the evaluation must not stop the audit
            self._follow_recorded(record)
            why = (
                f"re-deriving it from the input at {_where(source.at)} raised {type(exc).__name__}: "
                f"{cut_message(exc)} (the policy agent dead-letters such a turn: evaluation-failed)"
            )
            return _finding("underivable", at, record.subject, why)
        if not attempts:
            self._follow_recorded(record)
            return _finding("altered", at, record.subject, "its input needs no decision")
        self._heads[chain_key(record)] = head_after(attempts[0])  # the record the agent would have written
        return _finding(
            "altered",
            at,
            record.subject,
            "does not re-derive bit for bit: " + describe_difference(record, attempts[0]),
        )

    def _verified(self, again: Event, pack: RulePack, training: TrainingState, models: ModelCatalog) -> None:
        """``again`` re-derived the record bit for bit: its chain goes on from it."""
        self._heads[chain_key(again)] = head_after(again)
        self._last_used[again.tenant] = (pack, training, models)
        self.verified += 1
        self.rederived = True

    def _follow_recorded(self, record: Event) -> None:
        """No re-derivation: continue the chain from the record as written, if it has chain fields."""
        if record.sequence is not None and record.hash is not None:
            with contextlib.suppress(LedgerflowError):
                key = chain_key(record)
                self._heads[key] = ChainHead(key, record.sequence, record.hash)


def describe_difference(recorded: Event, derived: Event) -> str:
    """The fields that differ, e.g. ``payload.outcome: recorded 'deny', re-derived 'allow'``."""
    ours, theirs = _flat(recorded.to_json()), _flat(derived.to_json())
    names = sorted(set(ours) | set(theirs), key=lambda n: (n in ("hash", "prev_hash"), n))
    diffs = [
        f"{n}: recorded {ours.get(n)!r}, re-derived {theirs.get(n)!r}"
        for n in names
        if ours.get(n) != theirs.get(n)
    ]
    if not diffs:
        return "the JSON forms are equal but the bytes differ (schema version or encoding)"
    more = len(diffs) - MAX_FIELDS_SHOWN
    return "; ".join(diffs[:MAX_FIELDS_SHOWN]) + (f"; and {more} more field(s)" if more > 0 else "")


def cut_message(exc: BaseException) -> str:
    """``exc``'s message on one line, at most ``MAX_ERROR_CHARS`` characters."""
    text = " ".join(str(exc).split()) or "(no message)"
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def _flat(obj: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in obj.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = value
    return out


def _finding(what: str, at: Position, key: str, detail: str) -> Finding:
    return Finding(f"decision.{what}", at.topic, at.partition, at.offset, key, detail)


def _where(at: Position) -> str:
    return f"{at.topic}[{at.partition}]@{at.offset}"


def letters_name(digests: AbstractSet[str] | None, value: bytes) -> bool:
    """Pure: whether a dead letter of the record's position holds the record: its ``value_sha256``
    is the record's. Anyone who can write Kafka can put a letter in a DLQ naming any position; one
    that names a position but another value excuses no missing answer there."""
    return digests is not None and hashlib.sha256(value).hexdigest() in digests
