"""A training outcome linked to the tenant's real chain head and hashed right, but written to
another partition of ``training.audit`` than the tenant's, changes neither
``GET /v1/training/status`` nor a rebuild, on the real broker, a real worker and a real edge.

The chain has no secret: anyone who can write to Kafka can link and hash a record right. The
training agent writes a tenant's outcomes only into its home partition (its command's, where
Kafka's default partitioner put the tenant key). The projector kept one chain head per tenant
whatever partition a record came from, so the forgery, read first, was projected (the status
showed disabled, version 2, owner ``intruder``) and the admin's genuine disable afterwards was
quarantined as a ``broken-link``. Now the projector dead-letters it (``chain-misplaced``) before
projection, the genuine disable shows, and the fresh and parallel rebuilds write the same status,
chain head, quarantine and fences as the live projector; the audit names it ``training.misplaced``
and nothing else on ``training.audit``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from ledgerflow.audit.cli import run_audit
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.eventhash import link_event
from ledgerflow.dlq import read_dead_letters
from ledgerflow.kafka.admin import partition_counts
from ledgerflow.policy.wire import head_after
from ledgerflow.projections.keys import Keys
from ledgerflow.topics import TRAINING_AUDIT
from tests.integration.test_forged_reference import _audit, _post, _send, forged_disable
from tests.integration.test_forged_training_projection import (
    _projected_up_to,
    _status,
    _wait,
    genuine_disable_shows,
    live_and_rebuilt,
)
from tests.support.processes import Process

TENANT = "ft-acme"  # the helpers' tenant (_training_keys)


def test_a_linked_training_outcome_in_another_partition_is_quarantined_live_and_in_rebuilds(
    settings: Settings, worker: Process, edge: str, tokens, log_dir: Path
) -> None:
    admin = tokens(TENANT, "admin")
    enabled = _post(edge, admin, "/v1/training/enable", {"reason": "fine-tune", "ttl_seconds": 3600})
    assert enabled.status_code == 200, enabled.text
    [(real_raw, real)] = _audit(settings)
    _wait("the enable in the status", lambda: _status(edge, admin)["version"] == 1, worker)
    genuine = _status(edge, admin)

    topic = settings.topic(TRAINING_AUDIT)
    count = asyncio.run(partition_counts(settings, [topic]))[topic]
    home, elsewhere = real_raw.partition, (real_raw.partition + 1) % count
    unchained, _ = forged_disable(real)
    forged = link_event(unchained, head_after(real))  # the real head's next link, hashed right
    asyncio.run(_send(settings, TRAINING_AUDIT, [(TENANT.encode(), codec.encode(forged), elsewhere)]))
    [(forged_raw, _)] = [(r, e) for r, e in _audit(settings) if r.partition == elsewhere]
    live = Keys.for_prefix(settings.topic_prefix)
    projected = lambda: _projected_up_to(settings, live, elsewhere, forged_raw.offset)  # noqa: E731
    _wait("the projector past the misplaced record", projected, worker)

    assert _status(edge, admin) == genuine, "a misplaced training outcome reached GET /v1/training/status"
    letters = [x.letter for x in asyncio.run(read_dead_letters(settings, TRAINING_AUDIT))]
    [letter] = [
        d for d in letters if d is not None and (d.partition, d.offset) == (elsewhere, forged_raw.offset)
    ]
    assert letter.reason_code == "chain-misplaced" and letter.agent == "read-models", letter.reason
    assert f"belongs in partition {home} of {count}, not {elsewhere}" in letter.reason, letter.reason

    genuine_disable_shows(edge, admin, worker, genuine)
    ours, fresh, parallel = live_and_rebuilt(settings, live)
    assert ours["quarantine"] == {}, ours["quarantine"]  # the genuine disable linked
    assert ours["status"][b"version"] == b"2" and ours["status"][b"owner"] != b"intruder"
    assert fresh == ours, "the fresh rebuild's training read model differs from the live one"
    assert parallel == ours, "the parallel rebuild's training read model differs from the live one"

    # The audit names the forgery once and folds the tenant's chain without it: no fork, and the
    # genuine disable after it is no `training.illegal` (it was, stepping onto the forged state).
    report = asyncio.run(run_audit(settings, projections=False, progress=False))
    on_training = [f for f in report.findings if f.topic == topic]
    assert [(f.kind, f.partition, f.offset) for f in on_training] == [
        ("training.misplaced", elsewhere, forged_raw.offset)
    ], on_training
