"""Issue 14: the admin console in Debian's Chromium against the real edge, worker, Kafka and Redis.

Each test signs in by pasting a token, like a person would, and checks what the page
shows; the browser console must stay free of errors (``console`` fixture).
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect

from ledgerflow.config import Settings
from tests.support.processes import Process, free_port, start, wait_http_ready

from .conftest import ROOT, SHORT_MS, Console, Traffic, start_conversation, submit_turn, wait_until

CARD = "4111 1111 1111 1111"  # Luhn-valid: the default constitution redacts it


def fresh_tenant() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


def turn_ids(page: Page) -> list[str]:
    return [el.get_attribute("data-turn-id") or "" for el in page.get_by_test_id("turn").all()]


def outcome(page: Page, turn_id: str) -> Locator:
    return page.locator(f'[data-turn-id="{turn_id}"]').get_by_test_id("outcome")


def open_conversation(console: Console, token: str, conv: str) -> Page:
    """Signs in, finds ``conv`` in the conversation list (newest first) and opens it."""
    page = console.sign_in(token, "conversations")
    link = page.get_by_test_id("conversation-list").get_by_role("link", name=conv)
    expect(link).to_be_visible(timeout=SHORT_MS)
    link.click()
    expect(page.get_by_test_id("stream-status")).to_have_text("live", timeout=SHORT_MS)
    return page


def test_subscriber_follows_a_conversation_live_redacted_and_resumes_after_reload(
    console: Console, edge: str, tokens
) -> None:
    tenant = fresh_tenant()
    producer, subscriber = tokens(tenant, "producer"), tokens(tenant, "subscriber")
    conv = f"ui-{uuid.uuid4().hex[:8]}"
    start_conversation(edge, producer, conv)
    submit_turn(edge, producer, conv, "t1", "hello there")
    page = open_conversation(console, subscriber, conv)
    first = page.locator('[data-turn-id="t1"]')
    expect(first.get_by_test_id("outcome")).to_have_text("allow", timeout=SHORT_MS)

    # Case 1: a turn published from outside appears with its decision; the card number is redacted.
    submit_turn(edge, producer, conv, "t2", f"my card is {CARD}, thanks")
    card_turn = page.locator('[data-turn-id="t2"]')
    expect(card_turn.get_by_test_id("outcome")).to_have_text("redact", timeout=SHORT_MS)
    expect(card_turn.get_by_test_id("redacted")).to_have_text("[redacted]")
    expect(card_turn.get_by_test_id("content")).to_contain_text("my card is")
    expect(card_turn.get_by_test_id("matched-rules")).not_to_be_empty()
    assert CARD not in page.content() and CARD.replace(" ", "") not in page.content()

    # Case 2: reload mid-stream; the page resumes from its cursor with no missing and no doubled turn.
    streams: list[dict[str, str]] = []
    page.on("request", lambda r: "/v1/conversation/stream" in r.url and streams.append(r.headers))
    with Traffic(edge, producer, conv, every_s=0.15) as traffic:
        wait_until(lambda: len(traffic.sent) >= 4, "the first background turns")
        page.reload()
        wait_until(lambda: len(traffic.sent) >= 12, "more background turns")
    expected = ["t1", "t2", *traffic.sent]
    expect(page.get_by_test_id("turn")).to_have_count(len(expected), timeout=SHORT_MS)
    assert turn_ids(page) == expected
    expect(page.locator(f'[data-turn-id="{traffic.sent[-1]}"]').get_by_test_id("outcome")).to_have_text(
        "allow", timeout=SHORT_MS
    )
    assert streams and streams[0].get("last-event-id"), f"the reloaded page did not resume: {streams}"
    # After the reload the card turn comes from the read model (spans stored as pairs): still redacted.
    expect(card_turn.get_by_test_id("redacted")).to_have_text("[redacted]")
    assert CARD not in page.content() and CARD.replace(" ", "") not in page.content()


def test_a_long_conversation_shows_its_newest_turns_and_the_older_ones_a_page_at_a_time(
    console: Console, edge: str, tokens
) -> None:
    """The read model pages a conversation's turns (200 at a time): the page shows the newest page
    and "older turns" brings the rest back, in order, each once, until the first turn is shown."""
    tenant = fresh_tenant()
    producer, subscriber = tokens(tenant, "producer"), tokens(tenant, "subscriber")
    conv = f"long-{uuid.uuid4().hex[:8]}"
    total = 450
    start_conversation(edge, producer, conv)
    auth = {"Authorization": f"Bearer {producer}"}
    with httpx.Client(base_url=edge, headers=auth, timeout=10) as client:
        for n in range(total):
            payload = {"turn_id": f"t{n:03}", "role": "user", "content": f"turn {n}", "model": "slm-1"}
            event = {"type": "MessageSubmitted", "subject": conv, "payload": payload | {"tokens": None}}
            sent = client.post("/v1/events", json=event)
            assert sent.status_code == 202, sent.text
        read = {"Authorization": f"Bearer {subscriber}"}
        wait_until(
            lambda: client.get(f"/v1/conversations/{conv}", headers=read).json().get("turn_count") == total,
            f"the read model to count all {total} turns",
            timeout=60,
        )
    page = open_conversation(console, subscriber, conv)
    expect(page.get_by_test_id("turn")).to_have_count(200, timeout=SHORT_MS)
    expect(page.get_by_text(f"200 of {total} turns")).to_be_visible()
    older = page.get_by_test_id("load-older")
    expect(older).to_have_text("↑ 200 older turns")
    older.click()
    expect(page.get_by_test_id("turn")).to_have_count(400, timeout=SHORT_MS)
    expect(older).to_have_text("↑ 50 older turns")
    older.click()
    expect(page.get_by_test_id("turn")).to_have_count(total, timeout=SHORT_MS)
    expect(page.get_by_text(f"{total} turns", exact=True)).to_be_visible()
    expect(older).to_have_count(0)  # the first turn is shown: nothing older to ask for
    assert turn_ids(page) == [f"t{n:03}" for n in range(total)]


def test_admin_enables_training_with_a_ttl_and_sees_it_expire_subscriber_cannot(
    console: Console, edge: str, tokens
) -> None:
    tenant = fresh_tenant()
    admin, subscriber = tokens(tenant, "admin,subscriber"), tokens(tenant, "subscriber")
    page = console.sign_in(admin, "training")
    page.get_by_test_id("ttl").fill("3")
    page.get_by_test_id("reason").fill("browser test")
    page.get_by_test_id("enable").click()
    expect(page.get_by_test_id("training-state")).to_have_text("enabled", timeout=SHORT_MS)
    expect(page.get_by_test_id("countdown")).to_contain_text("expires in")
    expect(page.get_by_test_id("training-state")).not_to_have_text("enabled", timeout=SHORT_MS)
    expect(page.get_by_test_id("countdown")).to_have_count(0)
    history = page.get_by_test_id("history")
    expect(history).to_contain_text("TrainingEnabled", timeout=SHORT_MS)
    expect(history).to_contain_text("TrainingExpired", timeout=SHORT_MS)

    # A subscriber sees the state but no control, and a request forged from its token is refused.
    console.allow(r"status of 403")
    viewer = console.sign_in(subscriber, "training")
    expect(viewer.get_by_test_id("read-only")).to_be_visible(timeout=SHORT_MS)
    expect(viewer.get_by_test_id("enable")).to_have_count(0)
    forged = viewer.evaluate(
        """async () => (await fetch('/v1/training/enable', {method: 'POST',
             headers: {'Authorization': 'Bearer ' + sessionStorage.getItem('lf.token'),
                       'Content-Type': 'application/json'},
             body: JSON.stringify({reason: 'forged', ttl_seconds: 60})})).status"""
    )
    assert forged == 403
    status = httpx.get(f"{edge}/v1/training/status", headers={"Authorization": f"Bearer {subscriber}"}).json()
    assert status["state"] != "enabled" or status["reason"] != "forged"


def test_publishing_an_invalid_pack_shows_the_rule_error_and_publishes_nothing(
    console: Console, edge: str, tokens
) -> None:
    tenant = fresh_tenant()
    admin = tokens(tenant, "admin,subscriber")
    auth = {"Authorization": f"Bearer {admin}"}
    before = httpx.get(f"{edge}/v1/policy/packs", headers=auth).json()["items"]
    console.allow(r"status of 422")
    page = console.sign_in(admin, "policy")
    puts: list[str] = []
    page.on("request", lambda r: r.method == "PUT" and puts.append(r.url))
    bad = json.dumps(
        {"tenant": tenant, "rules": [{"id": "bad-rule", "when": {"keywords": ["x"]}, "action": "explode"}]}
    )
    page.get_by_test_id("pack-editor").fill(bad)
    page.get_by_test_id("publish").click()
    errors = page.get_by_test_id("rule-errors")
    expect(errors).to_contain_text("bad-rule", timeout=SHORT_MS)
    assert puts == []
    assert httpx.get(f"{edge}/v1/policy/packs", headers=auth).json()["items"] == before

    rule = {"id": "codes", "when": {"keywords": ["Bluebird"]}, "action": "redact", "weight": 1.0}
    good = json.dumps({"tenant": tenant, "rules": [rule]})
    page.get_by_test_id("pack-editor").fill(good)
    page.get_by_test_id("validate").click()
    expect(page.get_by_test_id("valid")).to_be_visible(timeout=SHORT_MS)
    page.get_by_test_id("publish").click()
    expect(page.get_by_test_id("published")).to_be_visible(timeout=SHORT_MS)
    expect(page.get_by_test_id("pack-row")).to_have_count(len(before) + 1, timeout=SHORT_MS)


def counter(page: Page, test_id: str) -> int:
    text = page.get_by_test_id(test_id).inner_text().replace(",", "")
    return int(text) if text.isdigit() else -1


def test_overview_counters_move_while_traffic_runs(console: Console, edge: str, tokens) -> None:
    tenant = fresh_tenant()
    producer, viewer = tokens(tenant, "producer"), tokens(tenant, "subscriber")
    page = console.sign_in(viewer, "overview")
    expect(page.get_by_test_id("counter-turns")).not_to_have_text("—", timeout=SHORT_MS)
    first = counter(page, "counter-turns")
    with Traffic(edge, producer, every_s=0.1):
        wait_until(lambda: counter(page, "counter-turns") >= first + 10, "the turn counter to move")
        wait_until(lambda: counter(page, "counter-decisions") > 0, "the decision counter to move")
        expect(page.get_by_test_id("rate-chart")).to_be_visible(timeout=SHORT_MS)
    expect(page.get_by_test_id("health")).to_contain_text("kafka")


@pytest.fixture
def own_edge(settings: Settings, log_dir) -> tuple[str, list[Process]]:  # type: ignore[no-untyped-def]
    """An edge on a fixed port that the test may stop and start again."""
    http = f"127.0.0.1:{free_port()}"
    procs: list[Process] = []
    yield f"http://{http}", procs
    for p in procs:
        p.stop()


def start_edge(settings: Settings, base: str, log_dir, procs: list[Process]) -> None:  # type: ignore[no-untyped-def]
    proc = start(settings.with_overrides(http=base.removeprefix("http://")), "edge", "serve", log_dir=log_dir)
    procs.append(proc)
    wait_http_ready(proc, base)


def test_edge_stopped_and_restarted_the_page_shows_it_and_recovers(
    browser,
    settings: Settings,
    log_dir,
    own_edge,
    tokens,  # type: ignore[no-untyped-def]
) -> None:
    tenant = fresh_tenant()
    base, procs = own_edge
    start_edge(settings, base, log_dir, procs)
    console = Console(browser, base)
    console.allow(r"ERR_CONNECTION_REFUSED|ERR_EMPTY_RESPONSE|status of 503")
    producer, subscriber = tokens(tenant, "producer"), tokens(tenant, "subscriber")
    conv = f"ui-{uuid.uuid4().hex[:8]}"
    start_conversation(base, producer, conv)
    submit_turn(base, producer, conv, "t1", "before the restart")
    try:
        page = open_conversation(console, subscriber, conv)
        expect(outcome(page, "t1")).to_have_text("allow", timeout=SHORT_MS)

        procs.pop().stop()
        expect(page.get_by_test_id("stream-status")).to_have_text("disconnected", timeout=SHORT_MS)
        expect(page.get_by_test_id("disconnected")).to_contain_text("Reconnecting")
        # The shutdown frame the stopping edge sent, as a banner:
        expect(page.get_by_test_id("control-banner")).to_contain_text("edge is restarting")

        start_edge(settings, base, log_dir, procs)
        expect(page.get_by_test_id("stream-status")).to_have_text("live", timeout=SHORT_MS)
        expect(page.get_by_test_id("disconnected")).to_have_count(0)
        expect(page.get_by_test_id("control-banner")).to_have_count(0)
        submit_turn(base, producer, conv, "t2", "after the restart")
        expect(outcome(page, "t2")).to_have_text("allow", timeout=SHORT_MS)
        assert turn_ids(page) == ["t1", "t2"]
    finally:
        for w in console.contexts:
            w.context.close()
    assert console.errors() == [], f"errors in the browser console: {console.errors()}"


SCREENSHOTS = os.environ.get("LEDGERFLOW_CONSOLE_SCREENSHOTS", "")  # e.g. docs/console
MIXED = (
    "hello, can you summarise my last invoice?",
    "my card is 4111 1111 1111 1111, please update it",
    "what does the competitor pricing look like?",
    "is Project Nightingale on track?",
    "write to bo@example.com when it ships",
    "thanks, that is all for today (turn {n})",
)


def test_every_page_shows_live_data(console: Console, edge: str, tokens, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Each page with live data; with LEDGERFLOW_CONSOLE_SCREENSHOTS=docs/console, the screenshots."""
    tenant = f"acme-{uuid.uuid4().hex[:4]}"
    admin, producer = tokens(tenant, "admin,subscriber,producer"), tokens(tenant, "producer")
    auth = {"Authorization": f"Bearer {admin}"}
    out = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path
    out.mkdir(parents=True, exist_ok=True)
    pack = json.loads((ROOT / "examples" / "rulepacks" / "acme.json").read_text()) | {"tenant": tenant}
    for document in ({**pack, "rules": pack["rules"][:3]}, pack):  # two versions, so there is a diff
        published = httpx.put(f"{edge}/v1/policy/rules", json=document, headers=auth, timeout=10)
        assert published.status_code == 201, published.text
    enable = {"reason": "fine-tuning run 7", "ttl_seconds": 900}
    enabled = httpx.post(f"{edge}/v1/training/enable", json=enable, headers=auth, timeout=10)
    assert enabled.status_code == 200, enabled.text
    page = console.sign_in(admin, "overview")
    with Traffic(edge, producer, f"support-{uuid.uuid4().hex[:6]}", every_s=0.2, texts=MIXED) as traffic:
        for n in range(3):
            start_conversation(edge, producer, f"chat-{n}-{uuid.uuid4().hex[:4]}")
        wait_until(lambda: len(traffic.sent) >= 25, "traffic", timeout=30)
        expect(page.get_by_test_id("rate-chart")).to_be_visible(timeout=SHORT_MS)
        page.screenshot(path=out / "overview.png")

        page.goto(f"{edge}/console/#/conversations")
        expect(page.get_by_role("link", name=traffic.conv)).to_be_visible(timeout=SHORT_MS)
        page.screenshot(path=out / "conversations.png")
        page.get_by_role("link", name=traffic.conv).click()
        expect(page.get_by_test_id("redacted").first).to_be_visible(timeout=SHORT_MS)
        page.screenshot(path=out / "conversation.png")

    page.goto(f"{edge}/console/#/policy")
    expect(page.get_by_test_id("pack-row")).to_have_count(2, timeout=SHORT_MS)
    expect(page.get_by_test_id("diff")).to_contain_text("competitor-pricing", timeout=SHORT_MS)
    page.screenshot(path=out / "policy.png")

    page.goto(f"{edge}/console/#/training")
    expect(page.get_by_test_id("countdown")).to_be_visible(timeout=SHORT_MS)
    expect(page.get_by_test_id("history")).to_contain_text("TrainingEnabled", timeout=SHORT_MS)
    page.screenshot(path=out / "training.png")

    page.goto(f"{edge}/console/#/usage")
    expect(page.get_by_test_id("forecast-chart")).to_be_visible(timeout=SHORT_MS)
    page.screenshot(path=out / "usage.png")

    page.goto(f"{edge}/console/#/audit")
    page.get_by_test_id("run-audit").click()
    expect(page.get_by_test_id("audit-result")).to_contain_text("records read", timeout=60_000)
    page.screenshot(path=out / "audit.png")
