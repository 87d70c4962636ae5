"""Start the installed ``loopdeck serve``; fail unless its page loads and a dashboard draws over the websocket.

Run by .ci/run with the wheel's virtual environment, from outside the source
tree: a page template or textual-serve's static files missing from what
``pip install .`` gives fail here.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp


async def check(url: str) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(url + "/") as page:
            assert page.status == 200 and "textual.js" in await page.text(), page.status
        async with session.get(url + "/static/js/textual.js") as script:
            assert script.status == 200, script.status
        ws = await session.ws_connect(url + "/ws?width=120&height=40", origin=url)
        drawn = b""
        while b"newest first" not in drawn:
            message = await ws.receive(timeout=60)
            assert message.type == aiohttp.WSMsgType.BINARY, message
            drawn += message.data
        await ws.close()


def main(loopdeck: str, db: str) -> None:
    serve = subprocess.Popen([loopdeck, "serve", "--port", "0", "--db", db], stdout=subprocess.PIPE, text=True)
    try:
        assert serve.stdout is not None
        found = re.search(r"(http://\S+?:\d+)/", serve.stdout.readline())
        assert found, "serve did not say where it listens"
        asyncio.run(check(found.group(1)))
    finally:
        serve.send_signal(signal.SIGTERM)
        code = serve.wait(timeout=30)
    assert code == 0, f"serve exited {code} on SIGTERM"
    print("serve ok: the installed loopdeck served the page, a dashboard drew the runs list, SIGTERM stopped it")


if __name__ == "__main__":
    main(str(Path(sys.argv[1])), sys.argv[2])
