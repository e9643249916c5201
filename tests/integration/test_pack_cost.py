"""Rule pack compile cost through the real edge: a pack over the limits is refused at once, the
largest allowed one is compiled off the event loop, and listing versions does not recompile."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx

from ledgerflow.config import Settings
from tests.integration.edgekit import assert_problem


def _pack(patterns: list[str], per_rule: int = 100) -> dict[str, Any]:
    rules = [
        {"id": f"r{i}", "when": {"patterns": patterns[i : i + per_rule]}, "action": "review", "weight": 1}
        for i in range(0, len(patterns), per_rule)
    ]
    return {"rules": rules}


def _largest_allowed() -> dict[str, Any]:
    """Near every limit of policy/packlimits.py at once: 32 fresh case-insensitive characters,
    one repeat too large for RE2 (tried, then run by Python) and RE2 programs near the budget."""
    caseless = ["(?i)" + "".join(chr(0x3400 + 16 * j + i) for i in range(16)) for j in range(2)]
    return _pack([*caseless, "\\w{999}", *(f"\\w{{{40 - i % 3}}}x" for i in range(9))], per_rule=1)


def _while_healthz(edge: str, request: Any) -> tuple[httpx.Response, int]:
    """``request()`` while /healthz is asked every 50 ms: its answer, and how many /healthz
    answers (each a 200) came back while it ran. No timing is asserted on: the machine is shared."""
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(response=request()))
    thread.start()
    answered = 0
    while thread.is_alive():
        assert httpx.get(f"{edge}/healthz", timeout=30).status_code == 200
        answered += 1
        time.sleep(0.05)
    thread.join()
    return result["response"], answered


def _compiles(edge: str) -> float:
    """The edge's ``ledgerflow_edge_pack_compiles_total``."""
    for line in httpx.get(f"{edge}/metrics", timeout=30).text.splitlines():
        if line.startswith("ledgerflow_edge_pack_compiles_total "):
            return float(line.split()[1])
    raise AssertionError("the edge exports no ledgerflow_edge_pack_compiles_total")


def test_a_pack_over_the_limits_is_refused_at_once_in_one_line(edge: str, tokens) -> None:
    # The reviewer's input: 500 case-insensitive repeats blocked the edge 16 s and took 800 MB.
    pack = _pack([f"(?i)\\D{{{999 - i}}}" for i in range(500)])
    reader = {"Authorization": f"Bearer {tokens('acme', 'subscriber')}"}
    resp, _ = _while_healthz(
        edge, lambda: httpx.post(f"{edge}/v1/policy/validate", json=pack, headers=reader, timeout=60)
    )
    body = assert_problem(resp, 422)
    assert "too costly to compile" in body["detail"] and "at most 64" in body["detail"]
    assert "\n" not in body["detail"]
    admin = {"Authorization": f"Bearer {tokens('acme', 'admin')}"}
    put = httpx.put(f"{edge}/v1/policy/rules", json=pack, headers=admin, timeout=60)
    assert "too costly to compile" in assert_problem(put, 422)["detail"]


def test_the_largest_pack_allowed_is_compiled_off_the_event_loop(edge: str, tokens) -> None:
    reader = {"Authorization": f"Bearer {tokens('acme', 'subscriber')}"}
    resp, answered = _while_healthz(
        edge,
        lambda: httpx.post(f"{edge}/v1/policy/validate", json=_largest_allowed(), headers=reader, timeout=60),
    )
    assert resp.status_code == 200, resp.text  # the limits admit it, and /healthz answered meanwhile
    print(f"/healthz answered {answered} times while the largest allowed pack was validated")


def test_listing_several_versions_does_not_recompile_them(settings: Settings, edge: str, tokens) -> None:
    admin = {"Authorization": f"Bearer {tokens('acme', 'admin')}"}
    for version in range(1, 9):  # each near the RE2 budget, with a repeat RE2 gives up on
        pack = _pack([f"\\w{{{999 - version}}}", *(f"\\w{{{40 - i % 3}}}v{version}" for i in range(9))], 1)
        put = httpx.put(f"{edge}/v1/policy/rules", json={"tenant": "acme", **pack}, headers=admin, timeout=60)
        assert put.status_code == 201, put.text
    before = _compiles(edge)
    for listing in range(3):
        listed = httpx.get(f"{edge}/v1/policy/packs", headers=admin, timeout=60)
        assert listed.status_code == 200, listed.text
        items = listed.json()["items"]
        assert [(i["version"], i["refused"]) for i in items] == [(v, None) for v in range(8, 0, -1)]
        assert all(i["signer_kid"] for i in items)
        if listing == 0:
            first = _compiles(edge)
    one = httpx.get(f"{edge}/v1/policy/packs/2", headers=admin, timeout=60)
    assert one.status_code == 200 and one.json()["signer_kid"]
    # The first listing compiled each version at most once; later ones compile nothing (before:
    # every listing compiled all eight again, 13.5 s each with the reviewer's pack).
    assert first - before <= 8, (before, first)
    assert _compiles(edge) == first, "a later listing compiled the versions again"
