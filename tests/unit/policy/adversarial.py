"""Hostile 64 KiB turns for the policy detectors, and a timing report (not a test).

``ADVERSARIAL`` maps a name to a turn's content: each is a legal turn (at most
64 KiB of UTF-8) built to make one detector, the keyword matcher or case folding
do as much work as possible. The unit tests evaluate every one of them and assert
on the outcome and on the deterministic work count; timings are only printed:

    .venv/bin/python -m tests.unit.policy.adversarial

prints, per input, the worst of a few evaluations with the default pack and with
a pack that runs every detector, and the work units charged.
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType

LIMIT = 64 * 1024


def fill(unit: str, limit: int = LIMIT) -> str:
    """``unit`` repeated to the largest length whose UTF-8 form fits in ``limit`` bytes."""
    size = len(unit.encode("utf-8"))
    return unit * (limit // size)


_BUILDERS: dict[str, Callable[[], str]] = {
    "plain-prose": lambda: fill("Could you summarise the quarterly report for the sales team? "),
    "pem-headers": lambda: fill("-----BEGIN PRIVATE KEY-----"),
    "pem-headers-rsa": lambda: fill("-----BEGIN RSA PRIVATE KEY-----\n"),
    "pem-begin-words": lambda: "-----BEGIN " + fill("A ", LIMIT - 32),
    "pem-body-no-end": lambda: "-----BEGIN PRIVATE KEY-----\n" + fill("QUJD", LIMIT - 40),
    "pem-end-mismatch": lambda: fill("-----BEGIN EC PRIVATE KEY-----x-----END RSA PRIVATE KEY-----"),
    "digits": lambda: fill("4"),
    "digits-spaced": lambda: fill("4 "),
    "digits-dashed": lambda: fill("4-"),
    "card-like-groups": lambda: fill("4111 1111 1111 1111 "),
    "phone-plus-digits": lambda: "+" + fill("1", LIMIT - 1),
    "phone-plus-groups": lambda: fill("+1 2 3 4 5 6 7 "),
    "phone-nanp": lambda: fill("(555) 123-4567 "),
    "email-at-run": lambda: fill("@"),
    "email-many": lambda: fill("a@b.co "),
    "email-long-local": lambda: fill("a", LIMIT - 16) + "@example.com",
    "email-long-domain": lambda: "x@" + fill("a.", LIMIT - 8) + "1",
    "email-labels": lambda: fill("a@" + "a-" * 30 + "."),
    "iban-like": lambda: fill("GB82 WEST 1234 5698 7654 32 "),
    "iban-letters-digits": lambda: fill("GB8"),
    "jwt-no-dots": lambda: "eyJ" + fill("A", LIMIT - 3),
    "jwt-segments": lambda: fill(".eyJaaaaa"),
    "secret-prefixes": lambda: fill(" ghp_" + "a" * 35),
    "sk-dashes": lambda: fill(" sk-"),
    "slack-dashes": lambda: fill(" xoxb-"),
    "keyword-whitespace": lambda: "ignore" + fill(" ", LIMIT - 16) + "x",
    "keyword-near-misses": lambda: fill("ignore previous instruction "),
    "unicode-folding": lambda: fill("ßİﬃẞŉ"),
    "unicode-combining": lambda: fill("e\u0301\u0308\u0327"),
    "unicode-astral": lambda: fill("\U0001f600\U0001d7d8"),
    "unicode-digits": lambda: fill("\u0661\u0662\u0663 "),
}

ADVERSARIAL: MappingProxyType[str, Callable[[], str]] = MappingProxyType(_BUILDERS)
"""Name → a function building that 64 KiB turn (built on demand: some are slow to scan)."""


def _report() -> None:
    import json
    import time
    from pathlib import Path

    from ledgerflow.policy import TrainingState, Turn, evaluate, load_rule_pack
    from ledgerflow.policy.budget import WorkMeter, unmetered

    root = Path(__file__).resolve().parents[3]
    default = load_rule_pack(json.loads((root / "examples/rulepacks/default.json").read_text("utf-8")))
    every = load_rule_pack(
        {
            "tenant": "*",
            "rules": [
                {
                    "id": "all",
                    "when": {"pii": ["email", "phone", "payment_card", "iban", "secret"]},
                    "action": "redact",
                    "weight": 1,
                }
            ],
        }
    )
    training = TrainingState(False, 1)
    worst = 0.0
    print(
        f"{'input':22} {'chars':>6} {'default ms':>10} {'all-pii ms':>10} {'unmetered ms':>12}"
        f" {'units(all-pii)':>14}  outcome(all-pii)"
    )
    for name, build in ADVERSARIAL.items():
        content = build()
        assert len(content.encode("utf-8")) <= LIMIT, name
        turn = Turn("e", "acme", "c", "user", content)
        timings = []
        for pack, make in ((default, WorkMeter), (every, WorkMeter), (every, unmetered)):
            best = float("inf")
            for _ in range(3):
                meter = make()
                started = time.thread_time()
                decision = evaluate(turn, pack, training, meter=meter)
                best = min(best, time.thread_time() - started)
            timings.append(best * 1000)
            if make is WorkMeter:
                outcome, used = decision.outcome.value, meter.used
        worst = max(worst, *timings[:2])
        print(
            f"{name:22} {len(content):>6} {timings[0]:>10.2f} {timings[1]:>10.2f} {timings[2]:>12.2f}"
            f" {used:>14}  {outcome}"
        )
    print(f"worst evaluation with the budget: {worst:.2f} ms of CPU (thread time, best of 3)")
    print()
    print(f"{'rule pack pattern':22} {'input':>12} {'engine':>10} {'ms':>8}  outcome")
    for source, content in (
        (r"\d+ dollars", "1" * LIMIT),
        (r"\S+@\S+", "a" * LIMIT),
        (r"\b\d+ dollars", "1" * LIMIT),
        (r"(?i)secret\s*[:=]\s*\S+", "secret" + " " * (LIMIT - 6)),
    ):
        pack = load_rule_pack(
            {
                "tenant": "*",
                "rules": [{"id": "p", "when": {"patterns": [source]}, "action": "redact", "weight": 1}],
            }
        )
        engine = pack.rules[0].matchers[0].engine
        started = time.thread_time()
        decision = evaluate(Turn("e", "acme", "c", "user", content), pack, training)
        elapsed = (time.thread_time() - started) * 1000
        print(f"{source:22} {content[:4] + '…':>12} {engine:>10} {elapsed:>8.2f}  {decision.outcome.value}")


if __name__ == "__main__":
    _report()
