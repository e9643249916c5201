"""``ledgerflow policy validate|list|diff`` as a subprocess against the real broker."""

from __future__ import annotations

import json
from pathlib import Path

from ledgerflow.config import Settings
from tests.integration.clikit import run_cli

PACK = {
    "tenant": "acme",
    "rules": [{"id": "no-pineapple", "when": {"keywords": ["pineapple"]}, "action": "deny", "weight": 9}],
}


def _write(path: Path, pack: dict[str, object]) -> str:
    path.write_text(json.dumps(pack), encoding="utf-8")
    return str(path)


def test_validate_accepts_a_pack_offline_and_names_its_hash(settings: Settings, tmp_path: Path) -> None:
    ran = run_cli(settings, "policy", "validate", _write(tmp_path / "p.json", PACK), "--json")
    assert ran.code == 0, ran.err
    result = json.loads(ran.out)
    assert result["valid"] is True and result["tenant"] == "acme" and result["rules"] == 1
    assert len(result["constitution_hash"]) == 64


def test_validate_refuses_a_bad_pack_in_one_line_naming_the_rule(settings: Settings, tmp_path: Path) -> None:
    bad = {
        **PACK,
        "rules": [{"id": "broken", "when": {"patterns": ["(unclosed"]}, "action": "deny", "weight": 1}],
    }
    ran = run_cli(settings, "policy", "validate", _write(tmp_path / "bad.json", bad))
    assert ran.code == 2
    line = ran.one_line()
    assert line.startswith("ledgerflow: ") and "broken" in line


def test_validate_refuses_invalid_json_and_a_json_array(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text("{nope", encoding="utf-8")
    assert "not valid JSON" in run_cli(settings, "policy", "validate", str(tmp_path / "x.json")).one_line()
    (tmp_path / "a.json").write_text("[]", encoding="utf-8")
    ran = run_cli(settings, "policy", "validate", str(tmp_path / "a.json"))
    assert ran.code == 2 and "a rule pack is a JSON object, not a list" in ran.one_line()


def test_list_and_diff_follow_what_was_published(settings: Settings, tmp_path: Path) -> None:
    empty = run_cli(settings, "policy", "list", "--tenant", "acme")
    assert (empty.code, empty.out.strip()) == (0, "no rule pack published for tenant 'acme'")
    first = _write(tmp_path / "v1.json", PACK)
    second = _write(tmp_path / "v2.json", {**PACK, "rules": [{**PACK["rules"][0], "action": "review"}]})  # type: ignore[dict-item]
    for path in (first, second):
        assert run_cli(settings, "policy", "publish", path).code == 0

    listed = run_cli(settings, "policy", "list", "--tenant", "acme", "--json")
    assert listed.code == 0, listed.err
    items = json.loads(listed.out)
    assert [i["version"] for i in items] == [2, 1]
    assert items[0]["published_by"] == "cli" and items[0]["published_at"].endswith("Z")
    # checked against the trust store as GET /v1/policy/packs checks it: signed with the dev policy
    # key, so admitted (it used to be checked against no store: every pack `refused: no-trust-store`)
    assert [(bool(i["signer_kid"]), i["refused"]) for i in items] == [(True, None), (True, None)]
    table = run_cli(settings, "policy", "list", "--tenant", "acme").out.splitlines()
    assert table[0].split()[:2] == ["version", "published_at"] and table[1].split()[0] == "2"

    diff = run_cli(settings, "policy", "diff", "--tenant", "acme", "--from", "1", "--to", "2")
    assert diff.code == 0, diff.err
    assert diff.out.splitlines()[:2] == ["--- acme v1", "+++ acme v2"]
    assert '-      "action": "deny",' in diff.out and '+      "action": "review",' in diff.out

    same = run_cli(settings, "policy", "diff", second, "--tenant", "acme")  # the file against the newest
    assert same.out.strip() == f"no difference between acme v2 and {second}"
    changed = run_cli(settings, "policy", "diff", first, "--tenant", "acme")
    assert changed.out.splitlines()[:2] == ["--- acme v2", f"+++ {first}"]

    missing = run_cli(settings, "policy", "diff", "--tenant", "acme", "--from", "9")
    assert missing.code == 2
    assert missing.one_line() == "ledgerflow: tenant 'acme' has no rule pack version 9; published: 1, 2"


def test_diff_of_a_tenant_without_packs_says_how_to_add_one(settings: Settings) -> None:
    ran = run_cli(settings, "policy", "diff", "--tenant", "globex")
    assert ran.code == 2
    assert ran.one_line() == (
        "ledgerflow: tenant 'globex' has no published rule pack; `ledgerflow policy publish FILE` adds one"
    )
