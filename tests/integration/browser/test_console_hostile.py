"""The console against what users of a tenant can put in front of it: packs of tens of thousands
of lines, names, ids and turns that are long and full of markup, a malformed address, a role
that may read a conversation but not stream it. Each page must stay usable and show text as text.
"""

from __future__ import annotations

import time
import uuid

import httpx
from playwright.sync_api import Page, expect

from .conftest import SHORT_MS, Console, post_event, start_conversation

MARKUP = '<img src=x onerror="window.__injected=1">'


def fresh_tenant() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


def assert_responsive(page: Page, seconds: float) -> None:
    """The page's main thread answers within a second, again and again for ``seconds``."""
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        began = time.monotonic()
        page.evaluate("() => 1")
        assert time.monotonic() - began < 1.0, "the page's main thread was blocked"
        time.sleep(0.2)


def test_a_diff_of_two_large_packs_keeps_the_policy_page_responsive(
    console: Console, edge: str, tokens
) -> None:
    """Two packs of 24 rules of 1,000 keywords (about 24,000 lines each): the old line diff built
    a table of 576 million cells on every render, freezing the page for tens of seconds."""
    tenant = fresh_tenant()
    auth = {"Authorization": f"Bearer {tokens(tenant, 'admin')}"}
    for tag in ("a", "b"):
        rules = [
            {
                "id": f"r{i}",
                "when": {"keywords": [f"{tag}{i}x{j}" for j in range(1000)]},
                "action": "review",
                "weight": 1,
            }
            for i in range(24)
        ]
        put = httpx.put(f"{edge}/v1/policy/rules", json={"rules": rules}, headers=auth, timeout=60)
        assert put.status_code == 201, put.text
    page = console.sign_in(tokens(tenant, "subscriber"), "policy")
    expect(page.get_by_test_id("diff-approximate")).to_be_visible(timeout=SHORT_MS)
    expect(page.get_by_test_id("diff")).to_contain_text("more lines not shown")
    assert_responsive(page, 7)  # past the next poll of the pack list (every 5 s)
    page.get_by_test_id("pack-editor").fill('{"rules": []}')
    assert_responsive(page, 1)


def test_long_names_and_markup_stay_text_on_the_page_and_an_auditor_reads_the_turns(
    console: Console, edge: str, tokens
) -> None:
    tenant = fresh_tenant()
    admin, producer = tokens(tenant, "admin"), tokens(tenant, "producer")
    model = MARKUP + "M" * 200  # 256 printable characters: the longest name the registry takes
    registered = httpx.post(
        f"{edge}/v1/models",
        json={"model": model, "provider": "P" * 256, "context_window": 8192},
        headers={"Authorization": f"Bearer {admin}"},
        timeout=30,
    )
    assert registered.status_code == 200, registered.text
    conv = "c" + "x" * 127
    start_conversation(edge, producer, conv, model=model)
    payload = {
        "turn_id": "t" * 128,
        "role": "user",
        "content": MARKUP + "W" * 20_000,
        "model": model,
        "tokens": None,
    }
    post_event(edge, producer, {"type": "MessageSubmitted", "subject": conv, "payload": payload})

    page = console.sign_in(admin, "models")
    row = page.get_by_test_id("model-row").filter(has_text=MARKUP)
    expect(row).to_contain_text(MARKUP)
    expect(row.get_by_test_id("model-disable")).to_be_in_viewport()
    assert_fits(page)

    console.allow(r"status of 403")  # the auditor's stream: subscribers only (docs/sse.md)
    page = console.sign_in(tokens(tenant, "auditor"), f"conversations/{conv}")
    expect(page.get_by_test_id("ended")).to_contain_text("403")
    expect(page.get_by_test_id("content")).to_contain_text(MARKUP, timeout=SHORT_MS)  # from the read model
    assert_fits(page)
    assert page.evaluate("() => window.__injected") is None
    assert page.locator("main img").count() == 0


def assert_fits(page: Page) -> None:
    width = page.evaluate("() => document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert width <= 0, f"the page is {width} px wider than the window"


def test_a_malformed_address_leaves_the_console_usable(console: Console, edge: str, tokens) -> None:
    """``#/policy/%E0%A4%A`` threw in decodeURIComponent while rendering: a blank page, every time
    the address was loaded, until it was edited by hand."""
    page = console.sign_in(tokens(fresh_tenant(), "subscriber"), "policy/%E0%A4%A")
    page.reload()
    expect(page.get_by_test_id("packs")).to_be_visible(timeout=SHORT_MS)
    page.get_by_role("link", name="Training").click()
    expect(page.get_by_test_id("training-state")).to_be_visible()
