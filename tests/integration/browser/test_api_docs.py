"""The API reference at ``/docs`` in Chromium: it renders the edge's live OpenAPI document,
runs an operation against the edge, and loads nothing from anywhere but the edge."""

from __future__ import annotations

from playwright.sync_api import Browser, Request, expect

from ledgerflow.api.openapi import document

from .conftest import SHORT_MS


def test_the_api_reference_renders_the_live_document_and_loads_only_from_the_edge(
    browser: Browser, edge: str
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    requested: list[str] = []
    errors: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
    try:
        page.goto(f"{edge}/docs")
        ids = page.locator(".opblock-summary-operation-id")
        expect(ids.first).to_be_visible(timeout=SHORT_MS)
        documented = sorted(
            op["operationId"] for item in document()["paths"].values() for op in item.values()
        )
        assert sorted(ids.all_inner_texts()) == documented  # every operation of the live document
        expect(page.get_by_text(document()["info"]["title"]).first).to_be_visible()

        # "Try it out" on a public operation: Swagger UI calls the edge and shows its answer.
        health = page.locator("#operations-operations-getHealth")
        health.locator(".opblock-summary").click()
        health.get_by_role("button", name="Try it out").click()
        with page.expect_request(lambda r: r.url == f"{edge}/healthz") as call:
            health.get_by_role("button", name="Execute").click()
        assert isinstance(call.value, Request)
        answer = health.locator(".live-responses-table tbody .response-col_status")
        expect(answer).to_have_text("200", timeout=SHORT_MS)
        expect(health.locator(".live-responses-table .highlight-code")).to_contain_text('"status": "ok"')
    finally:
        context.close()
    outside = [u for u in requested if not u.startswith(edge + "/") and not u.startswith("data:")]
    assert outside == [], f"the page loaded from outside the edge: {outside}"
    assert f"{edge}/console/api-docs/swagger-ui-bundle.js" in requested
    assert f"{edge}/openapi.json" in requested
    assert errors == [], errors
