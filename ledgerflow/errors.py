"""One error tree for ledgerflow.

- ``DomainError``: expected refusals (a rejection event or an HTTP 4xx).
- ``InfrastructureError``: a dependency is missing or unreachable (retryable).
- ``DecodeError``: a poison record (goes to the dead-letter topic).
- ``NotFound``: a record an operator named (a dead letter's offset) is not there.

Messages are written for the operator: say what is wrong and what to do.
"""

from __future__ import annotations


class LedgerflowError(Exception):
    """Root of every error ledgerflow raises on purpose."""


class DomainError(LedgerflowError):
    """A request or command was refused by the rules of the domain."""


class ValidationError(DomainError):
    """Input does not satisfy a contract (schema, envelope, rule pack)."""


class AuthError(DomainError):
    """The caller is not authenticated (401) or not allowed (403)."""

    def __init__(self, detail: str, *, status: int = 401) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status


class InfrastructureError(LedgerflowError):
    """A dependency (Kafka, Redis, Java, Maven) is missing or unreachable."""


class PrerequisiteMissing(InfrastructureError):
    """A program the local stack needs is not installed. Operator action: install it."""


class TopicsMissing(InfrastructureError):
    """Kafka topics a request needs do not exist (deleted, or a broker came back without them).
    Its message names them and is shown to the client (503 + Retry-After): no secret in a name."""


class StackError(InfrastructureError):
    """The local stack could not be started or stopped."""


class NotFound(LedgerflowError):
    """A record the operator named is not there (exit 1, like a topic or service missing):
    not a usage error, since the same command may find it later."""


class DecodeError(LedgerflowError):
    """A record cannot be decoded or validated: it is poison and goes to the DLQ."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
