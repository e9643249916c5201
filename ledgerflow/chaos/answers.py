"""Whether a client's answer was one the API documents. Pure: a status, two headers, the path.

Documented for a valid request: 2xx; 503 problem+json with ``Retry-After`` (a dependency is
down); 429 problem+json with ``Retry-After`` (a limit); 409 problem+json from a training
command (the command was published and rejected: its outcome). Anything else — a 500, a 503
without ``Retry-After``, another 4xx for a request we know is valid — is a discrepancy.
"""

from __future__ import annotations

from dataclasses import dataclass

PROBLEM = "application/problem+json"


@dataclass(frozen=True, slots=True)
class Verdict:
    label: str  # the status as counted in the report ("202", "503", …)
    ok: bool  # acknowledged: the record is on the log
    documented: bool


def judge(path: str, status: int, content_type: str, retry_after: str | None) -> Verdict:
    label = str(status)
    if 200 <= status < 300:
        return Verdict(label, True, True)
    problem = content_type.split(";")[0].strip() == PROBLEM
    if status in (503, 429):
        return Verdict(label, False, problem and bool(retry_after))
    if status == 409 and path.startswith("training"):
        return Verdict(label, True, problem)
    return Verdict(label, False, False)
