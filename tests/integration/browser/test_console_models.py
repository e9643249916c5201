"""The console's Models page in Chromium against the real edge and worker: an admin registers
a model with prices, sees it listed, disables and enables it; a bad form sends nothing; a
subscriber sees the registry read-only and a forged change from its token is refused."""

from __future__ import annotations

import uuid

import httpx
from playwright.sync_api import expect

from .conftest import SHORT_MS, Console


def test_admin_registers_disables_and_enables_a_model_subscriber_reads_only(
    console: Console, edge: str, tokens
) -> None:
    tenant = f"t{uuid.uuid4().hex[:8]}"
    admin, subscriber = tokens(tenant, "admin,subscriber"), tokens(tenant, "subscriber")
    page = console.sign_in(admin, "models")
    expect(page.get_by_test_id("no-models")).to_be_visible(timeout=SHORT_MS)

    page.get_by_test_id("model-model").fill("slm-1")
    page.get_by_test_id("model-provider").fill("local")
    page.get_by_test_id("model-contextWindow").fill("0")  # refused by the page: nothing is sent
    page.get_by_test_id("model-register").click()
    expect(page.get_by_test_id("problem")).to_contain_text("context window")
    page.get_by_test_id("model-contextWindow").fill("8192")
    page.get_by_test_id("model-inputPrice").fill("0.5")
    page.get_by_test_id("model-outputPrice").fill("1.5")
    page.get_by_test_id("model-register").click()
    expect(page.get_by_test_id("model-result")).to_contain_text(
        "ModelRegistered (version 1)", timeout=SHORT_MS
    )
    row = page.locator('[data-testid="model-row"][data-model="slm-1"]')
    expect(row).to_contain_text("local", timeout=SHORT_MS)
    expect(row).to_contain_text("8,192")
    expect(row.get_by_test_id("model-state")).to_have_text("enabled")
    expect(page.get_by_test_id("providers")).to_contain_text("local (1)")

    row.get_by_test_id("model-disable").click()
    expect(row.get_by_test_id("model-state")).to_have_text("disabled", timeout=SHORT_MS)
    row.get_by_test_id("model-enable").click()
    expect(row.get_by_test_id("model-state")).to_have_text("enabled", timeout=SHORT_MS)
    registry = httpx.get(f"{edge}/v1/models", headers={"Authorization": f"Bearer {admin}"}).json()
    assert registry["version"] == 3 and registry["models"][0]["output_price_per_1k"] == 1.5

    console.allow(r"status of 403")
    viewer = console.sign_in(subscriber, "models")
    expect(viewer.locator('[data-testid="model-row"][data-model="slm-1"]')).to_be_visible(timeout=SHORT_MS)
    expect(viewer.get_by_test_id("read-only")).to_be_visible()
    expect(viewer.get_by_test_id("model-disable")).to_have_count(0)
    forged = viewer.evaluate(
        """async () => (await fetch('/v1/models/disable', {method: 'POST',
             headers: {'Authorization': 'Bearer ' + sessionStorage.getItem('lf.token'),
                       'Content-Type': 'application/json'},
             body: JSON.stringify({model: 'slm-1'})})).status"""
    )
    assert forged == 403
    after = httpx.get(f"{edge}/v1/models", headers={"Authorization": f"Bearer {subscriber}"}).json()
    assert after["version"] == 3 and after["models"][0]["enabled"] is True
