"""The console in a real browser: Debian's Chromium driven by Playwright's sync API,
against the real edge, worker, Kafka and Redis of tests/integration/conftest.py.

Playwright's sync API keeps an event loop current in this thread, so the browser starts
after the stack fixtures (which use ``asyncio.run``) and the tests talk to the edge with
plain ``httpx`` calls. Every page's console is watched: an error there fails the test
unless the test expects exactly that message (a 403 it provoked, a refused connection
while it stopped the edge).
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from ledgerflow.config import Settings
from tests.support.processes import Process, start

ROOT = Path(__file__).resolve().parents[3]
DIST = ROOT / "console" / "dist"
CHROMIUM = os.environ.get("LEDGERFLOW_CHROMIUM", "/usr/bin/chromium")
SHORT_MS = 15_000  # the bound for anything the page must show


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def console_dist() -> Path:
    """The built console; built here (scripts/console.sh) when a bare `pytest` runs before `make console`."""
    if not (DIST / "index.html").exists():
        done = subprocess.run([str(ROOT / "scripts" / "console.sh")], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.fail(f"building the console failed:\n{done.stderr[-2000:]}", pytrace=False)
    return DIST


@dataclass
class Watched:
    """A browser context whose pages' console errors are collected."""

    context: BrowserContext
    errors: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def new_page(self) -> Page:
        page = self.context.new_page()
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))
        return page

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(p.search(e) for p in self.allowed)]


@dataclass
class Console:
    """Opens browser contexts on one edge; ``allow`` names console errors a test provokes itself."""

    browser: Browser
    base: str
    contexts: list[Watched] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def allow(self, pattern: str) -> None:
        self.allowed.append(re.compile(pattern))

    def sign_in(self, token: str, page_path: str = "overview") -> Page:
        """A fresh browser context (its own session storage), signed in with ``token`` by pasting it."""
        context = self.browser.new_context(viewport={"width": 1280, "height": 800})
        watched = Watched(context, allowed=self.allowed)
        self.contexts.append(watched)
        page = watched.new_page()
        page.goto(f"{self.base}/console/")
        page.get_by_test_id("token-input").fill(token)
        page.get_by_test_id("sign-in").click()
        page.get_by_test_id("whoami").wait_for(timeout=SHORT_MS)
        page.goto(f"{self.base}/console/#/{page_path}")
        assert token not in page.url  # the token never goes into a URL
        return page

    def errors(self) -> list[str]:
        return [e for w in self.contexts for e in w.unexpected()]


@pytest.fixture
def worker(settings: Settings, log_dir: Path) -> Iterator[Process]:
    """The worker with 2 s usage windows, so the usage page has closed windows and a forecast in seconds."""
    fast = {"LEDGERFLOW_USAGE_WINDOW_S": "2", "LEDGERFLOW_USAGE_LATENESS_S": "1"}
    proc = start(settings, "worker", "worker", log_dir=log_dir, extra_env=fast)
    yield proc
    proc.stop()


@pytest.fixture
def playwright_driver(settings: object, worker: object) -> Iterator[Playwright]:
    """Playwright, started after the stack fixtures (see the module docstring)."""
    with sync_playwright() as pw:
        yield pw


@pytest.fixture
def browser(playwright_driver: Playwright, console_dist: Path) -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: run scripts/bootstrap.sh as root (apt-get install chromium) "
            "or set LEDGERFLOW_CHROMIUM",
            pytrace=False,
        )
    browser = playwright_driver.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-dev-shm-usage"]
    )
    yield browser
    browser.close()


@pytest.fixture
def console(browser: Browser, edge: str) -> Iterator[Console]:
    c = Console(browser, edge)
    yield c
    for w in c.contexts:
        w.context.close()
    assert c.errors() == [], f"errors in the browser console: {c.errors()}"


# -- talking to the edge from outside the browser ---------------------------------------------


def post_event(base: str, token: str, body: dict[str, object]) -> dict[str, object]:
    auth = {"Authorization": f"Bearer {token}"}
    resp = httpx.post(f"{base}/v1/events", json=body, headers=auth, timeout=10)
    assert resp.status_code == 202, resp.text
    return dict(resp.json())


def start_conversation(base: str, token: str, conv: str, model: str = "slm-1") -> None:
    payload = {"actor": "bo", "model": model}
    post_event(base, token, {"type": "ConversationStarted", "subject": conv, "payload": payload})


def submit_turn(base: str, token: str, conv: str, turn_id: str, content: str, model: str = "slm-1") -> None:
    payload = {"turn_id": turn_id, "role": "user", "content": content, "model": model, "tokens": None}
    post_event(base, token, {"type": "MessageSubmitted", "subject": conv, "payload": payload})


def wait_until(check: Callable[[], bool], what: str, timeout: float = SHORT_MS / 1000) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


class Traffic:
    """Turns published from outside the browser in a background thread until stopped."""

    def __init__(
        self,
        base: str,
        token: str,
        conv: str | None = None,
        every_s: float = 0.1,
        texts: tuple[str, ...] = ("background turn {n}",),
    ) -> None:
        self.base, self.token, self.every_s, self.texts = base, token, every_s, texts
        self.conv = conv or f"load-{uuid.uuid4().hex[:8]}"
        self.sent: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def _run(self) -> None:
        n = len(self.sent)
        while not self._stop.is_set():
            n += 1
            turn_id = f"bg{n}"
            text = self.texts[n % len(self.texts)].format(n=n)
            submit_turn(self.base, self.token, self.conv, turn_id, text)
            self.sent.append(turn_id)
            self._stop.wait(self.every_s)
