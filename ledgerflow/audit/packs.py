"""Rule pack signatures in the audit (pure: no I/O).

Every ``policy.rules`` record is verified as the agents verify it (the same
``admitted_pack``: a valid signature by a key of the policy trust store, valid at the time
it signed); ``feed`` takes that outcome. A refused pack is not a discrepancy by itself
(the agents refused it too; it is counted and listed), but a decision that names a pack
no valid signature admitted is: ``decision.unsigned-pack``; one whose ``signer_kid`` is not
the key that signed its pack is ``decision.signer``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ledgerflow.audit.report import Finding, Report
from ledgerflow.contracts.events import Event
from ledgerflow.contracts.payloads import PolicyDecision, RulePackPublished
from ledgerflow.policy import RulePack
from ledgerflow.projections.ops import Position

DEFAULT_TENANT = "*"
MAX_LISTED = 20


@dataclass
class PackSignatures:
    """Which pack versions a valid signature admitted, and why the others were refused."""

    admitted: int = 0
    refused: dict[tuple[str, int], str] = field(default_factory=dict)  # (tenant, version) -> where + why

    def feed(self, at: Position, event: Event, refusal: str | None) -> None:
        payload = event.payload
        if not isinstance(payload, RulePackPublished):
            return
        if refusal is None:
            self.admitted += 1
        else:
            where = f"{at.topic}[{at.partition}]@{at.offset}"
            self.refused[(event.subject, payload.version)] = f"{where}: {refusal}"

    def report(self, report: Report) -> None:
        report.count("rule packs validly signed", self.admitted)
        if not self.refused:
            return
        report.count("rule packs refused", len(self.refused))
        listed = sorted(self.refused.values())[:MAX_LISTED]
        report.notes.append(
            f"{len(self.refused)} policy.rules record(s) were refused (never in force; the agents "
            "dead-letter them): " + "; ".join(listed)
        )

    def decision(
        self, at: Position, event: Event, history: dict[tuple[str, int], RulePack]
    ) -> Finding | None:
        """A finding when ``event`` (a decision) used a pack no valid signature admitted."""
        payload = event.payload
        if not isinstance(payload, PolicyDecision) or payload.rule_pack_version == 0:
            return None  # version 0: the built-in default pack, part of the code
        version = payload.rule_pack_version
        packs = [history.get((event.tenant, version)), history.get((DEFAULT_TENANT, version))]
        match = [p for p in packs if p is not None and p.constitution_hash == payload.constitution_hash]
        if not match:
            why = self.refused.get((event.tenant, version)) or self.refused.get((DEFAULT_TENANT, version))
            return Finding(
                "decision.unsigned-pack",
                at.topic,
                at.partition,
                at.offset,
                event.subject,
                f"the decision used rule pack v{version} ({payload.constitution_hash[:16]}…), which no valid "
                f"signature admitted" + (f" (refused at {why})" if why else " (not on policy.rules)"),
            )
        if all(p.signer_kid != payload.signer_kid for p in match):
            return Finding(
                "decision.signer",
                at.topic,
                at.partition,
                at.offset,
                event.subject,
                f"the decision records signer {payload.signer_kid!r}, its pack v{version} was signed by "
                f"{match[0].signer_kid!r}",
            )
        return None
