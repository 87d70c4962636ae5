"""``loopdeck serve`` over real HTTP and websockets on loopback: access, tokens, each dashboard process's life."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import aiohttp
import pytest

from tests.e2e.conftest import Cli
from tests.e2e.serving import Served, children, describe, make_tokens, serving

pytestmark = pytest.mark.slow
DRAWN = 2_000  # bytes of screen: the dashboard has drawn (its first frame is ~10 kB)


async def open_dashboard(session: aiohttp.ClientSession, served: Served) -> aiohttp.ClientWebSocketResponse:
    return await session.ws_connect(f"{served.url}/ws?width=120&height=40", origin=served.url)


async def read_until(ws: aiohttp.ClientWebSocketResponse, done, timeout: float = 30) -> bytes:
    """The dashboard's screen bytes, until ``done(bytes)`` holds."""
    data = b""
    deadline = time.monotonic() + timeout
    while not done(data):
        left = deadline - time.monotonic()
        assert left > 0, f"the dashboard did not get there in {timeout}s; it sent {len(data)} bytes"
        msg = await ws.receive(timeout=left)
        if msg.type == aiohttp.WSMsgType.BINARY:
            data += msg.data
        elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
            raise AssertionError(f"the websocket closed after {len(data)} bytes")
    return data


async def wait_for(predicate, timeout: float, what) -> None:
    """Until ``predicate()``; ``what`` (a text, or a function giving one) says what failed to happen."""
    deadline = time.monotonic() + timeout
    while not predicate():
        said = what() if callable(what) else what
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {said}"
        await asyncio.sleep(0.1)


def test_beyond_loopback_without_tokens_or_with_a_bad_file_is_refused(cli: Cli):
    result = cli("serve", "--host", "0.0.0.0")
    assert result.returncode == 2 and "needs tokens" in result.stderr and "--tokens" in result.stderr
    bad = cli.tmp / "bad-tokens"
    bad.write_text("# header\nabcdefghijklmnopqrstuvwx alice admin\n")
    result = cli("serve", "--tokens", str(bad))
    assert result.returncode == 2 and f"{bad}:2" in result.stderr and "'admin' is not one of" in result.stderr
    assert "abcdefghijklmnopqrstuvwx" not in result.stderr  # never the token, even a broken line's
    missing = cli("serve", "--tokens", str(cli.tmp / "nope"))
    assert missing.returncode == 2 and "cannot be read" in missing.stderr
    assert cli("serve", "--public-url", "ftp://x").returncode == 2


async def test_beyond_loopback_every_request_needs_a_token_kept_in_an_httponly_cookie(cli: Cli):
    path, tokens = make_tokens(cli.tmp)
    with serving(cli, "--host", "0.0.0.0", "--tokens", str(path)) as served:
        async with aiohttp.ClientSession() as anonymous:
            for url in ("/", "/runs/20261130-000000-abcdef", "/ws", "/static/js/textual.js"):
                async with anonymous.get(served.url + url) as response:
                    assert response.status == 401, url
            async with anonymous.get(served.url + "/?token=not-a-token") as response:
                assert response.status == 401
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:  # cookies for an IP
            async with browser.get(f"{served.url}/?token={tokens['alice']}&fontsize=14", allow_redirects=False) as r:
                assert r.status == 303
                assert tokens["alice"] not in r.headers["Location"] and "fontsize=14" in r.headers["Location"]
                cookie = r.headers["Set-Cookie"]
                assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
            async with browser.get(served.url + "/") as page:
                assert page.status == 200
                html = await page.text()
                assert "textual.js" in html and tokens["alice"] not in html
            with pytest.raises(aiohttp.WSServerHandshakeError) as foreign:  # a websocket from another site's page
                await browser.ws_connect(served.url + "/ws", origin="http://evil.example")
            assert foreign.value.status == 403
            ws = await open_dashboard(browser, served)
            await read_until(ws, lambda data: len(data) > DRAWN)
            await ws.close()
    logs = (cli.tmp / "serve.err").read_text() + served.proc.stdout.read()
    assert "GET / 200 alice" in logs and "dashboard for alice (operator) opened" in logs
    assert all(token not in logs for token in tokens.values())


async def test_on_loopback_without_tokens_only_loopback_host_names_are_answered(cli: Cli):
    with serving(cli) as served:
        async with aiohttp.ClientSession() as session:
            async with session.get(served.url + "/") as page:
                assert page.status == 200
            # a page of another site whose name resolves to 127.0.0.1 (DNS rebinding) gets nothing
            async with session.get(served.url + "/", headers={"Host": "evil.example:80"}) as rebound:
                assert rebound.status == 403


async def test_a_dozen_open_and_close_cycles_leave_no_dashboard_process(cli: Cli):
    with serving(cli) as served:
        async with aiohttp.ClientSession() as session:
            for cycle in range(12):
                ws = await open_dashboard(session, served)
                if cycle % 4 == 0:  # some after the dashboard has drawn, most at once (while it starts)
                    await read_until(ws, lambda data: len(data) > DRAWN)
                    assert served.dashboards(), f"cycle {cycle}: a dashboard drew, but serve has no child process"
                await ws.close()
            await wait_for(
                lambda: served.dashboards() == [],
                timeout=30,
                what=lambda: f"every dashboard process to end; left: {describe(served.dashboards())}",
            )
        assert served.proc.poll() is None


async def test_a_dashboard_that_ignores_the_quit_is_killed_after_the_grace_period(cli: Cli):
    with serving(cli, "--grace", "1") as served:
        async with aiohttp.ClientSession() as session:
            ws = await open_dashboard(session, served)
            await read_until(ws, lambda data: len(data) > DRAWN)
            (pid,) = served.dashboards()
            os.kill(pid, signal.SIGSTOP)  # frozen: it cannot answer the quit the closed tab sends
            await ws.close()
            await wait_for(lambda: served.dashboards() == [], timeout=20, what="the frozen dashboard to be killed")
        log = (cli.tmp / "serve.err").read_text()
        assert f"dashboard process {pid} did not quit in 1s: killed" in log


async def test_a_dashboard_that_dies_or_cannot_start_says_so_in_the_page(cli: Cli):
    with serving(cli) as served:
        async with aiohttp.ClientSession() as session:
            ws = await open_dashboard(session, served)
            await read_until(ws, lambda data: len(data) > DRAWN)
            (pid,) = served.dashboards()
            os.kill(pid, signal.SIGKILL)
            screen = await read_until(ws, lambda data: b"Reload the page" in data)
            assert b"ended unexpectedly (signal 9)" in screen
            await ws.close()

            url = f"{served.url}/runs/20990101-000000-abcdef/ws?width=120&height=40"
            ws = await session.ws_connect(url, origin=served.url)
            screen = await read_until(ws, lambda data: b"Reload the page" in data)
            assert b"exit status 2" in screen and b"no run with id '20990101-000000-abcdef'" in screen
            await ws.close()
            async with session.get(f"{served.url}/runs/..%2F..%2Fetc") as page:
                assert page.status == 404  # not a run id: no dashboard is started for it


async def test_sigterm_stops_serve_and_every_dashboard_it_started(cli: Cli):
    with serving(cli) as served:
        async with aiohttp.ClientSession() as session:
            ws = await open_dashboard(session, served)
            await read_until(ws, lambda data: len(data) > DRAWN)
            (pid,) = served.dashboards()
            served.proc.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(served.proc.wait, 30) == 0
        assert pid not in children(served.proc.pid) and not os.path.exists(f"/proc/{pid}")
