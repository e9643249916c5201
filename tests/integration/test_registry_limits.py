"""The read-only Schema Registry API (``/registry``, no token) against hostile requests on the
real edge: an oversized path or query is 414 problem+json (``api/limits.py: MAX_TARGET_BYTES``),
too many headers 431, a request line past what the HTTP server reads at all its plain 400, and
hostile path values the registry's own 404/405; a flood mixing all of them with good reads
gets each its answer and never a 5xx, and the edge answers afterwards."""

from __future__ import annotations

import socket
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import httpx

from ledgerflow.api.limits import MAX_HEADERS, MAX_TARGET_BYTES
from tests.integration.edgekit import assert_problem

SUBJECTS = "/registry/subjects"
SUBJECT = "io.ledgerflow.MessageSubmitted"


def over(prefix: str, extra: int = 1) -> str:
    """``prefix`` padded so that the target is ``MAX_TARGET_BYTES + extra`` bytes."""
    return prefix + "a" * (MAX_TARGET_BYTES + extra - len(prefix))


def raw_request(base: str, target: bytes) -> bytes:
    """The status line the edge sends for ``GET target`` written on a socket (no client-side limit)."""
    where = urlsplit(base)
    with socket.create_connection((where.hostname or "", where.port or 80), timeout=15) as conn:
        conn.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: edge\r\nConnection: close\r\n\r\n")
        answer = b""
        while b"\r\n" not in answer and (chunk := conn.recv(4096)):
            answer += chunk
        return answer.split(b"\r\n", 1)[0]


def test_an_oversized_path_or_query_is_414_problem_json(edge: str, http: httpx.Client) -> None:
    for target in (
        over(f"{SUBJECTS}/"),
        over(f"{SUBJECTS}/{SUBJECT}/versions/"),
        over(f"{SUBJECTS}?deleted="),
        over("/registry/schemas/ids/1?subject=", 30_000),
    ):
        body = assert_problem(http.get(edge + target), 414)
        assert body["limit"] == "target" and str(MAX_TARGET_BYTES) in body["detail"], body
    just_fits = http.get(edge + over(f"{SUBJECTS}?deleted=", 0))
    assert just_fits.status_code == 200, just_fits.text  # the query is ignored: the limit is exact
    long_subject = http.get(edge + over(f"{SUBJECTS}/", 0) + "/versions")  # 9 bytes over: refused
    assert_problem(long_subject, 414)
    for size in (70_000, 1_000_000):  # past the HTTP server's own buffer: its plain 400, never a 5xx
        status = raw_request(edge, b"/registry/subjects/" + b"a" * size)
        assert status.split(b" ")[1] in (b"400", b"414"), status


def test_too_many_headers_and_hostile_values_get_their_documented_answers(
    edge: str, http: httpx.Client
) -> None:
    many = {f"x-h{i}": "v" for i in range(MAX_HEADERS + 1)}
    assert assert_problem(http.get(edge + SUBJECTS, headers=many), 431)["limit"] == "headers"
    for target, status in (
        (f"{SUBJECTS}/{SUBJECT}/versions/99999999999999999999999999", 404),
        (f"{SUBJECTS}/{SUBJECT}/versions/-2", 422),  # the registry's 42202: not a version id
        ("/registry/schemas/ids/99999999999999999999999999999", 404),
        ("/registry/schemas/ids/%00", 404),
        ("/registry/schemas/ids/%C2%B2", 404),  # "²": str.isdigit() says yes, int() says no
        ("/registry/schemas/ids/%D9%A1", 404),  # "١" (Arabic-Indic one): no id, not id 1
        (f"{SUBJECTS}/{SUBJECT}/versions/%C2%B2", 422),
        (f"{SUBJECTS}/{SUBJECT}/versions/%D9%A1", 422),
        (f"{SUBJECTS}/%00%ff/versions", 404),
        (f"{SUBJECTS}/" + "%F0%9F%98%80" * 600 + "/versions", 404),
        (f"{SUBJECTS}/{SUBJECT}", 405),  # only POST (lookup) there
    ):
        resp = http.get(edge + target)
        assert resp.status_code == status, (target[:80], resp.status_code, resp.text[:200])
        assert resp.headers["content-type"].startswith("application/problem+json"), resp.headers


def test_a_flood_of_good_and_hostile_registry_requests_gets_no_5xx(edge: str) -> None:
    hostile = {
        over(f"{SUBJECTS}/"): 414,
        over(f"{SUBJECTS}?deleted="): 414,
        "/registry/schemas/ids/99999999999999999999999999999": 404,
        f"{SUBJECTS}/{SUBJECT}/versions/latest": 200,
        SUBJECTS: 200,
    }
    targets = list(hostile) * 40  # 200 requests over 8 keep-alive connections

    def client_run(share: list[str]) -> Counter[tuple[str, int]]:
        seen: Counter[tuple[str, int]] = Counter()
        with httpx.Client(timeout=30) as client:
            for target in share:
                seen[(target, client.get(edge + target).status_code)] += 1
        return seen

    with ThreadPoolExecutor(8) as pool:
        tallies = list(pool.map(client_run, [targets[i::8] for i in range(8)]))
    total = sum(tallies, Counter())
    wrong = {(t[:60], s): n for (t, s), n in total.items() if s != hostile[t]}
    assert not wrong, f"answers other than each request's own status: {wrong}"
    assert sum(total.values()) == len(targets)
    assert httpx.get(edge + "/healthz", timeout=10).status_code == 200
