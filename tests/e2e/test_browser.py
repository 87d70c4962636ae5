"""The web dashboard in a real headless Chromium (Debian's), driven by Playwright: a gate approved from the page.

Chromium comes from Debian's packages (``.ci/run`` installs it); Playwright's own
browser download is not used. Without Chromium the test is skipped locally and
fails under CI=true. ``LOOPDECK_SCREENSHOTS=1`` also writes the page to
``screenshots/web.png`` (the README shows it).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT, Cli
from tests.e2e.serving import make_tokens, serving

pytestmark = pytest.mark.slow
SIM = {"sim": {"kind": "sim", "latency_ms": 5, "tokens": [10, 5]}}
# what a headless Chromium needs on a machine with no network and no display (and as root: no sandbox)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        why = "the browser tests need Debian's chromium (apt-get install chromium; .ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(why + "; with CI=true a missing browser is a failure", pytrace=False)
        pytest.skip(why)
    return path


@pytest.fixture
def browser() -> Iterator[object]:
    playwright_api = pytest.importorskip("playwright.sync_api")
    executable = chromium_path()
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


class Screen:
    """A page of the web dashboard and the terminal bytes its dashboard has sent it."""

    def __init__(self, browser, url: str) -> None:
        self.page = browser.new_page(viewport={"width": 1280, "height": 720})
        self.data = bytearray()
        self.page.on("websocket", lambda ws: ws.on("framereceived", self._frame))
        self.response = self.page.goto(url)
        self.page.wait_for_selector("body.-first-byte", timeout=60_000)
        self.page.focus("textarea.xterm-helper-textarea")  # where the terminal takes keys

    def press(self, *keys: str) -> None:
        for key in keys:
            self.page.keyboard.press(key)
            self.page.wait_for_timeout(300)  # a lone escape is told from alt+key by the pause after it

    def _frame(self, payload: bytes | str) -> None:
        self.data += payload if isinstance(payload, bytes) else payload.encode()

    def wait_for_text(self, text: str, timeout: float = 60) -> None:
        """Until the dashboard has drawn ``text`` (read off the bytes it sent: the page draws on a canvas)."""
        deadline = time.monotonic() + timeout
        while text.encode() not in self.data:
            assert time.monotonic() < deadline, f"the page never showed {text!r} ({len(self.data)} bytes received)"
            self.page.wait_for_timeout(100)


def test_a_gate_is_approved_from_the_browser_by_the_tokens_operator_and_a_viewer_cannot(cli: Cli, browser):
    plan = cli.write_plan(
        {
            "agents": SIM,
            "steps": [{"key": "draft"}, {"key": "publish", "depends_on": ["draft"], "approval": "required"}],
        }
    )
    run = cli.spawn("run", str(plan), "--headless")  # waits at the gate for someone to answer
    tokens_file, tokens = make_tokens(cli.tmp)
    try:
        run_id = cli.wait_until("SELECT run_id FROM steps WHERE key='publish' AND status='waiting_user'", bool)[0][0]
        with serving(cli, "--host", "0.0.0.0", "--tokens", str(tokens_file)) as served:
            nobody = browser.new_page()
            assert nobody.goto(f"{served.url}/runs/{run_id}").status == 401  # no token, beyond loopback

            viewer = Screen(browser, f"{served.url}/runs/{run_id}?token={tokens['victor']}")
            viewer.wait_for_text("read-only: esc closes")  # the approval dialog, without its actions
            viewer.press("a", "Escape", "?")
            viewer.wait_for_text("loopdeck — keys")  # the keys after `a` arrived, so `a` was handled (and refused)
            assert cli.query("SELECT status FROM steps WHERE key='publish'") == [("waiting_user",)]
            assert tokens["victor"] not in viewer.page.url  # the token left the address bar for a cookie

            operator = Screen(browser, f"{served.url}/runs/{run_id}?token={tokens['alice']}")
            operator.wait_for_text("a approve")
            save_screenshot(operator.page)
            operator.press("a")
            cli.wait_until(f"SELECT status FROM runs WHERE id='{run_id}'", lambda rows: rows == [("succeeded",)])
        assert run.wait(timeout=30) == 0
    finally:
        run.kill()
    publish = next(step for step in cli.show(run_id)["steps"] if step["key"] == "publish")
    assert publish["approved_by"] == "alice"  # the token's name, never a shared one


def save_screenshot(page) -> None:
    picture = page.screenshot()
    if os.environ.get("LOOPDECK_SCREENSHOTS"):
        Path(ROOT / "screenshots" / "web.png").write_bytes(picture)
