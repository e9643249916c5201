"""One frozen dataclass per event payload, shaped like the newest schema version.

The class name is the event type. ``to_record`` / ``from_record`` convert to and from
the Avro record dict (timestamps as int microseconds, sequences as lists on the way
out and tuples on the way in).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar, Literal

Role = Literal["user", "assistant", "tool"]
Outcome = Literal["allow", "review", "redact", "deny"]


@dataclass(frozen=True, slots=True)
class _Payload:
    TYPE: ClassVar[str] = ""

    def to_record(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _names(type(self))}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Any:
        return cls(**record)


_NAMES: dict[type, tuple[str, ...]] = {}


def _names(cls: type) -> tuple[str, ...]:
    names = _NAMES.get(cls)
    if names is None:
        names = _NAMES[cls] = tuple(f.name for f in fields(cls))
    return names


@dataclass(frozen=True, slots=True)
class ConversationStarted(_Payload):
    TYPE: ClassVar[str] = "ConversationStarted"
    actor: str
    model: str


@dataclass(frozen=True, slots=True)
class MessageSubmitted(_Payload):
    TYPE: ClassVar[str] = "MessageSubmitted"
    turn_id: str
    role: Role
    content: str
    model: str
    tokens: int | None = None
    language: str | None = None  # v2


@dataclass(frozen=True, slots=True)
class ConversationClosed(_Payload):
    TYPE: ClassVar[str] = "ConversationClosed"
    reason: str


@dataclass(frozen=True, slots=True)
class Redaction:
    """A span [start, end) of content code points to redact."""

    start: int
    end: int


@dataclass(frozen=True, slots=True)
class PolicyDecision(_Payload):
    TYPE: ClassVar[str] = "PolicyDecision"
    input_event_id: str
    input_hash: str | None
    conversation_id: str
    outcome: Outcome
    score: float
    matched_rules: tuple[str, ...]
    rule_pack_version: int
    constitution_hash: str
    training_version: int
    training_enabled: bool
    redactions: tuple[Redaction, ...] = ()
    signer_kid: str | None = None  # v2: the key that signed the pack used
    models_version: int | None = None  # v2: the model registry a model rule was evaluated against

    def to_record(self) -> dict[str, Any]:
        record = _Payload.to_record(self)
        record["matched_rules"] = list(self.matched_rules)
        record["redactions"] = [{"start": r.start, "end": r.end} for r in self.redactions]
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> PolicyDecision:
        values = dict(record)
        values["matched_rules"] = tuple(record["matched_rules"])
        values["redactions"] = tuple(Redaction(r["start"], r["end"]) for r in record["redactions"])
        return cls(**values)


@dataclass(frozen=True, slots=True)
class RulePackPublished(_Payload):
    TYPE: ClassVar[str] = "RulePackPublished"
    version: int
    constitution_hash: str
    document: str
    signature: str | None = None  # v2: detached JWS by a publisher key (policy/signing.py)


@dataclass(frozen=True, slots=True)
class _TrainingCommand(_Payload):
    command_id: str
    actor: str
    reason: str
    ttl_seconds: int | None = None
    expected_version: int | None = None


@dataclass(frozen=True, slots=True)
class EnableTraining(_TrainingCommand):
    TYPE: ClassVar[str] = "EnableTraining"


@dataclass(frozen=True, slots=True)
class DisableTraining(_TrainingCommand):
    TYPE: ClassVar[str] = "DisableTraining"


@dataclass(frozen=True, slots=True)
class _TrainingOutcome(_Payload):
    command_id: str | None
    version: int
    actor: str
    reason: str
    expires_at: int | None = None
    rejected_reason: str | None = None


@dataclass(frozen=True, slots=True)
class TrainingEnabled(_TrainingOutcome):
    TYPE: ClassVar[str] = "TrainingEnabled"


@dataclass(frozen=True, slots=True)
class TrainingDisabled(_TrainingOutcome):
    TYPE: ClassVar[str] = "TrainingDisabled"


@dataclass(frozen=True, slots=True)
class TrainingExpired(_TrainingOutcome):
    TYPE: ClassVar[str] = "TrainingExpired"


@dataclass(frozen=True, slots=True)
class TrainingRejected(_TrainingOutcome):
    TYPE: ClassVar[str] = "TrainingRejected"


@dataclass(frozen=True, slots=True)
class UsageWindow(_Payload):
    TYPE: ClassVar[str] = "UsageWindow"
    model: str
    window_start: int
    window_end: int
    tokens: int
    events: int
    estimated_tokens: int
    correction: bool
    revision: int


@dataclass(frozen=True, slots=True)
class _ModelCommand(_Payload):
    command_id: str
    actor: str
    model: str


@dataclass(frozen=True, slots=True)
class RegisterModel(_ModelCommand):
    TYPE: ClassVar[str] = "RegisterModel"
    provider: str
    context_window: int
    input_price_per_1k: float | None = None
    output_price_per_1k: float | None = None
    enabled: bool = True
    expected_version: int | None = None


@dataclass(frozen=True, slots=True)
class SetModelEnabled(_ModelCommand):
    TYPE: ClassVar[str] = "SetModelEnabled"
    enabled: bool
    expected_version: int | None = None


@dataclass(frozen=True, slots=True)
class _ModelOutcome(_Payload):
    command_id: str
    version: int
    actor: str
    model: str


@dataclass(frozen=True, slots=True)
class ModelRegistered(_ModelOutcome):
    TYPE: ClassVar[str] = "ModelRegistered"
    provider: str
    context_window: int
    input_price_per_1k: float | None = None
    output_price_per_1k: float | None = None
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class ModelEnabled(_ModelOutcome):
    TYPE: ClassVar[str] = "ModelEnabled"


@dataclass(frozen=True, slots=True)
class ModelDisabled(_ModelOutcome):
    TYPE: ClassVar[str] = "ModelDisabled"


@dataclass(frozen=True, slots=True)
class ModelRejected(_ModelOutcome):
    TYPE: ClassVar[str] = "ModelRejected"
    rejected_reason: str


KeyAction = Literal["created", "rotated", "retired"]


@dataclass(frozen=True, slots=True)
class SigningKeyChanged(_Payload):
    """identity.audit: a signing key was created, rotated in or retired."""

    TYPE: ClassVar[str] = "SigningKeyChanged"
    action: KeyAction
    purpose: str
    kid: str
    alg: str
    thumbprint: str
    not_before: int
    not_after: int | None = None
    previous_kid: str | None = None


@dataclass(frozen=True, slots=True)
class TokenMinted(_Payload):
    """identity.audit: the dev issuer minted a token (its claims, never the token)."""

    TYPE: ClassVar[str] = "TokenMinted"
    jti: str
    sub: str
    roles: tuple[str, ...]
    kid: str
    issued_at: int
    expires_at: int

    def to_record(self) -> dict[str, Any]:
        record = _Payload.to_record(self)
        record["roles"] = list(self.roles)
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> TokenMinted:
        return cls(**{**record, "roles": tuple(record["roles"])})


@dataclass(frozen=True, slots=True)
class RefusalCount:
    reason: str
    tenant: str
    count: int


@dataclass(frozen=True, slots=True)
class AuthRefusals(_Payload):
    """identity.audit: one edge's refused authentications in one window."""

    TYPE: ClassVar[str] = "AuthRefusals"
    edge: str
    window_start: int
    window_seconds: int
    counts: tuple[RefusalCount, ...]

    def to_record(self) -> dict[str, Any]:
        record = _Payload.to_record(self)
        record["counts"] = [{"reason": c.reason, "tenant": c.tenant, "count": c.count} for c in self.counts]
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> AuthRefusals:
        counts = tuple(RefusalCount(c["reason"], c["tenant"], c["count"]) for c in record["counts"])
        return cls(**{**record, "counts": counts})


Payload = (
    ConversationStarted
    | MessageSubmitted
    | ConversationClosed
    | PolicyDecision
    | RulePackPublished
    | EnableTraining
    | DisableTraining
    | TrainingEnabled
    | TrainingDisabled
    | TrainingExpired
    | TrainingRejected
    | UsageWindow
    | RegisterModel
    | SetModelEnabled
    | ModelRegistered
    | ModelEnabled
    | ModelDisabled
    | ModelRejected
    | SigningKeyChanged
    | TokenMinted
    | AuthRefusals
)

PAYLOAD_TYPES: dict[str, type[Any]] = {
    cls.TYPE: cls
    for cls in (
        ConversationStarted,
        MessageSubmitted,
        ConversationClosed,
        PolicyDecision,
        RulePackPublished,
        EnableTraining,
        DisableTraining,
        TrainingEnabled,
        TrainingDisabled,
        TrainingExpired,
        TrainingRejected,
        UsageWindow,
        RegisterModel,
        SetModelEnabled,
        ModelRegistered,
        ModelEnabled,
        ModelDisabled,
        ModelRejected,
        SigningKeyChanged,
        TokenMinted,
        AuthRefusals,
    )
}


NESTED_RECORDS: dict[str, type[Any]] = {"Redaction": Redaction, "RefusalCount": RefusalCount}
"""The classes of records nested in payloads, by record name (the codec reads them straight in)."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record an agent gave up on (not an event: no envelope). Goes to ``<topic>.dlq``."""

    source_topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes | None], ...]
    reason: str
    reason_code: str
    failed_at: int
    agent: str
    value_sha256: str | None = None  # v2: of the whole original value
    value_size: int | None = None  # v2: bytes of the whole original value
    value_truncated: bool = False  # v2: ``value`` is a prefix
    key_truncated: bool = False  # v2: ``key`` is a prefix
    headers_dropped: int = 0  # v2: original headers not kept (from the end)

    def to_record(self) -> dict[str, Any]:
        record = {name: getattr(self, name) for name in _names(DeadLetter)}
        record["headers"] = [{"key": k, "value": v} for k, v in self.headers]
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> DeadLetter:
        values = dict(record)
        values["headers"] = tuple((h["key"], h["value"]) for h in record["headers"])
        return cls(**values)
