"""The pure parts of the console's read APIs: paging, list items, counters, lag, catalogue,
validation errors, training history, usage windows, audit findings per tenant, the SPA
fallback and the OpenAPI build from the route table."""

from __future__ import annotations

import orjson
import pytest
from aiokafka import TopicPartition
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.routing import Route

from ledgerflow.api.app import routes
from ledgerflow.api.audit_run import answer, findings_for, lock_key, positions, tenant_of
from ledgerflow.api.console import is_client_route
from ledgerflow.api.conversation_list import Entry, item, page_after
from ledgerflow.api.openapi import UndocumentedRoute, build, document, documented_routes
from ledgerflow.api.overview import counters
from ledgerflow.api.paging import Cursor, parse_limit, rfc3339
from ledgerflow.api.rulepack_catalog import catalog
from ledgerflow.api.rulepack_validation import rule_errors
from ledgerflow.api.spec import operation
from ledgerflow.api.training_history import history
from ledgerflow.api.usage import windows
from ledgerflow.audit.report import Finding, Report
from ledgerflow.consumer_lag import lag_rows
from ledgerflow.contracts.chain import Located, head_of, link
from ledgerflow.contracts.events import new_event
from ledgerflow.contracts.payloads import RulePackPublished
from ledgerflow.errors import ValidationError
from ledgerflow.projections.keys import Keys

T0 = 1_764_460_150_123_456


@pytest.mark.parametrize("raw", ["0", "201", "-1", "1.5", "ten", "", "٣", "²", " 5", "1_0", "9" * 5000])
def test_limit_outside_1_to_max_is_refused(raw: str) -> None:
    with pytest.raises(ValidationError, match="limit"):
        parse_limit(raw, default=50, maximum=200)


def test_a_refused_limit_is_not_echoed_in_full() -> None:
    """A 400-digit limit was written whole into the 422 detail (any role could ask)."""
    with pytest.raises(ValidationError) as info:
        parse_limit("9" * 400, default=50, maximum=200)
    assert str(info.value) == "limit: must be between 1 and 200, got 99999999999999999..."
    with pytest.raises(ValidationError, match="got 201$"):
        parse_limit("201", default=50, maximum=200)


def test_limit_defaults_and_bounds() -> None:
    assert parse_limit(None, default=50, maximum=200) == 50
    assert parse_limit("200", default=50, maximum=200) == 200


@settings(max_examples=50, deadline=None)
@given(
    st.integers(min_value=0, max_value=2**62),
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,40}", fullmatch=True),
)
def test_cursor_round_trips(score: int, member: str) -> None:
    assert Cursor.decode(Cursor(score, member).encode()) == Cursor(score, member)


@pytest.mark.parametrize("text", ["", "!!!", "Zm9v", "OmM=", "eDpj", "x" * 2000, "MTo="])
def test_a_cursor_no_page_answered_is_refused(text: str) -> None:
    with pytest.raises(ValidationError, match="cursor"):
        Cursor.decode(text)


def test_rfc3339_has_microseconds_and_z() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00.000000Z"
    assert rfc3339(T0).endswith("Z") and "T" in rfc3339(T0)


def test_pages_walk_every_entry_once_newest_first_even_with_tied_scores() -> None:
    ranked = [(f"c{i}".encode(), float(100 - i // 3)) for i in range(10)]
    ranked.sort(key=lambda kv: (kv[1], kv[0]), reverse=True)  # as ZREVRANGEBYSCORE answers
    seen: list[str] = []
    after = None
    while True:
        page = page_after(ranked, after, 3)
        if not page:
            break
        seen += [e.conversation_id for e in page]
        after = Cursor(page[-1].last_activity, page[-1].conversation_id)
    assert seen == [m.decode() for m, _ in ranked]


def test_list_item_reads_counts_and_last_outcome() -> None:
    fields = {b"turns": b"3", b"last_decision": orjson.dumps({"outcome": "redact"})}
    got = item(Entry("c1", T0), fields, 2)
    assert got == {
        "conversation_id": "c1",
        "last_activity": rfc3339(T0),
        "turns": 3,
        "decisions": 2,
        "last_outcome": "redact",
    }
    assert item(Entry("c1", T0), {}, 0)["last_outcome"] is None


def test_counters_default_to_zero_and_lag_is_end_minus_committed() -> None:
    assert counters({b"turns": b"4", b"decisions_deny": b"1"}, 2) == {
        "turns": 4,
        "decisions": {"allow": 0, "redact": 0, "review": 0, "deny": 1},
        "dead_letters": 2,
    }
    a, b = TopicPartition("p.x", 1), TopicPartition("p.x", 0)
    rows = lag_rows("g", {a: 5, b: 9}, {a: 7, b: 9})
    assert [(r.partition, r.lag) for r in rows] == [(0, 0), (1, 2)]


def _pack(tenant: str, version: int, description: str, at: int) -> object:
    doc = {"tenant": tenant, "version": version, "description": description, "rules": []}
    return new_event(
        "RulePackPublished",
        tenant=tenant,
        subject=tenant,
        payload=RulePackPublished(version, f"h{version}", orjson.dumps(doc).decode()),
        producer="edge:ana",
        occurred_at_micros=at,
    )


def test_catalog_is_the_tenants_versions_newest_first_later_record_wins() -> None:
    events = [_pack("acme", 1, "a", T0), _pack("globex", 1, "g", T0), _pack("acme", 2, "b", T0 + 1)]
    events.append(_pack("acme", 2, "b2", T0 + 2))
    got = catalog(events, "acme")  # type: ignore[arg-type]
    assert [(p.version, p.document["description"]) for p in got] == [(2, "b2"), (1, "a")]
    assert got[0].summary()["published_by"] == "edge:ana"


def test_rule_errors_name_the_rule_of_each_problem() -> None:
    message = (
        "rule pack is invalid: rule 'x' (rules[0]).action: 'nope' is bad; rule 'y' (rules[1]): 'weight' is a "
        "required property; ... and 1 more. Fix the rule pack and publish it again (format: docs/policy.md)."
    )
    assert [(e.rule, e.message[:9]) for e in rule_errors(message)] == [
        ("x", "rule 'x' "),
        ("y", "rule 'y' "),
        (None, "... and 1"),
    ]
    one = rule_errors(
        "rule pack is invalid: rule 'x' (rules[1]) repeats the id of rules[0]; rule ids must be unique"
    )
    assert [e.rule for e in one] == ["x"]
    assert [e.rule for e in rule_errors("rule pack is not valid JSON: x")] == [None]


def _training(seq_records: list[dict[str, object]]) -> list[Located]:
    out, head = [], None
    for offset, record in enumerate(seq_records):
        linked = link(record, head)
        head = head_of(linked)
        out.append(Located("p.training.audit", 0, offset, str(record["subject"]), linked))
    return out


def test_history_marks_the_record_where_the_chain_breaks() -> None:
    base = {"tenant": "acme", "subject": "acme", "occurred_at": "2026-11-30T00:00:00.000000Z"}
    records = _training(
        [
            {**base, "type": "TrainingEnabled", "payload": {"actor": "ana", "expires_at": T0}},
            {**base, "type": "TrainingDisabled", "payload": {"actor": "ana"}},
        ]
    )
    rows = history(records, "acme")
    assert [(r["mode"], r["chain"]) for r in rows] == [("enabled", "ok"), ("disabled", "ok")]
    assert rows[0]["expires_at"] == rfc3339(T0) and rows[1]["expires_at"] is None
    tampered = Located(records[1].topic, 0, 1, "acme", {**records[1].record, "payload": {"actor": "eve"}})
    assert [r["chain"] for r in history([records[0], tampered], "acme")] == ["ok", "broken"]
    assert history(records, "globex") == []


def test_usage_windows_sum_source_partitions() -> None:
    tokens = {b"m|0|60000000|w-0": b"5", b"m|0|60000000|w-1": b"7", b"n|60000000|120000000|w-0": b"1"}
    turns = {b"m|0|60000000|w-0": b"1", b"m|0|60000000|w-1": b"2"}
    got = windows(tokens, turns)
    assert got["models"] == ["m", "n"]
    assert [(w["model"], w["tokens"], w["turns"]) for w in got["windows"]] == [("m", 12, 3), ("n", 1, 0)]


def test_audit_findings_are_kept_for_their_own_tenant_only() -> None:
    keys = Keys.for_prefix("p.")
    report = Report()
    report.extend(
        [
            Finding("decision.altered", "p.policy.decisions", 0, 4, "c1", "ours"),
            Finding("decision.altered", "p.policy.decisions", 0, 5, "c2", "theirs"),
            Finding("projection.diff", "redis", None, None, keys.conversation("acme", "c1"), "ours"),
            Finding("projection.diff", "redis", None, None, keys.tenant("globex"), "theirs"),
            Finding("projection.diff", "redis", None, None, keys.decision_chain("t1", "c9"), "unknown"),
            Finding("projection.incomplete", keys.namespace, None, None, keys.sentinel(), "global"),
        ]
    )
    tenants = {("p.policy.decisions", 0, 4): "acme", ("p.policy.decisions", 0, 5): "globex"}
    assert positions(report.findings) == set(tenants)
    mine = findings_for("acme", report, tenants)
    assert sorted(f.detail for f in mine) == ["global", "ours", "ours"]
    out = answer(mine, report)
    assert out["ok"] is False and out["counts"] == {
        "decision.altered": 1,
        "projection.diff": 1,
        "projection.incomplete": 1,
    }
    assert tenant_of(Finding("x.y", "t", None, None, "conv:{a%2Fb/c}", ""), {}) == "a/b"
    assert lock_key("p.", "acme") != lock_key("p.", "globex")


def test_an_audit_whose_list_another_tenant_filled_is_not_answered_clean() -> None:
    """The audit keeps its first MAX_FINDINGS findings and only counts the rest. Another tenant's
    producer that writes enough forged records (``input.system-producer``, straight to Kafka) fills
    that list, and this tenant's discrepancies, counted but not kept, were answered ``ok: true``."""
    report = Report(max_findings=2)
    report.extend(
        [
            Finding("input.system-producer", "p.conversation.events", 0, 1, "x", "theirs"),
            Finding("input.system-producer", "p.conversation.events", 0, 2, "x", "theirs"),
            Finding("decision.altered", "p.policy.decisions", 0, 9, "c1", "ours, not kept"),
        ]
    )
    tenants = {("p.conversation.events", 0, 1): "globex", ("p.conversation.events", 0, 2): "globex"}
    out = answer(findings_for("acme", report, tenants), report)
    assert out["findings"] == [] and out["counts"] == {}
    assert out["ok"] is False, "findings the audit did not keep may be this tenant's"
    assert out["complete"] is False
    whole = Report()
    whole.add(Finding("decision.altered", "p.policy.decisions", 0, 4, "c1", "ours"))
    mine = findings_for("acme", whole, {("p.policy.decisions", 0, 4): "acme"})
    assert answer(mine, whole)["complete"] is True
    assert answer([], Report()) | {"seconds": 0} == {
        "ok": True,
        "counts": {},
        "findings": [],
        "complete": True,
        "records_read": 0,
        "seconds": 0,
    }


@pytest.mark.parametrize(
    ("path", "client_route"),
    [("conversations/c-1", True), ("", True), ("assets/app.js", False), ("x.css", False)],
)
def test_spa_fallback_is_for_client_routes_only(path: str, client_route: bool) -> None:
    assert is_client_route(path) is client_route


def test_document_is_built_from_the_route_table_with_an_operation_id_each() -> None:
    doc = document()
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))
    for expected in ("listConversations", "getOverview", "runAudit", "validateRulePack", "putRules"):
        assert expected in ids
    assert "/" not in doc["paths"] and "/console" not in doc["paths"]
    assert {r.path for r in documented_routes(routes())} == set(doc["paths"])


def test_a_route_without_an_operation_fails_the_build() -> None:
    async def bare(request: object) -> None: ...

    with pytest.raises(UndocumentedRoute, match="/nowhere"):
        build([Route("/nowhere", bare)])
    described = operation("getNowhere", summary="x", responses={})(bare)
    assert build([Route("/nowhere", described)])["paths"]["/nowhere"]["get"]["operationId"] == "getNowhere"


def test_catalog_marks_what_the_agents_refuse_and_who_signed_the_rest(tmp_path: object) -> None:
    from pathlib import Path

    from ledgerflow.auth.devkeys import ensure_policy_keys
    from ledgerflow.kafka.policy_trust import PolicyTrust
    from ledgerflow.kafka.reference import builtin_default_pack
    from ledgerflow.policy import load_rule_pack
    from ledgerflow.rulepacks import sign_with

    state = Path(str(tmp_path))
    keys = ensure_policy_keys(state)
    doc = {**builtin_default_pack().document(), "tenant": "acme"}
    doc.pop("version", None)
    pack = load_rule_pack(doc)

    def published(version: int, signature: str | None) -> object:
        canonical = pack.with_version(version).canonical_json().decode()
        return new_event(
            "RulePackPublished",
            tenant="acme",
            subject="acme",
            payload=RulePackPublished(version, pack.constitution_hash, canonical, signature),
            producer="edge:ana",
            occurred_at_micros=T0,
        )

    events = [published(1, sign_with(keys, doc)), published(2, None), _pack("acme", 3, "empty", T0)]
    trust = PolicyTrust(str(state / "policy" / "jwks.json"))
    got = {
        p.version: (p.summary()["signer_kid"], p.summary()["refused"])
        for p in catalog(events, "acme", trust.lookup)
    }  # type: ignore[arg-type]
    assert got == {1: (keys.kid, None), 2: (None, "unsigned"), 3: (None, "invalid-rule-pack")}
