"""Web dashboard benchmark (not a test): from opening the page to the first drawn dashboard, in a real Chromium.

    python bench/web.py [--runs 7]

Starts ``loopdeck serve`` on a free loopback port over a database holding a
finished demo run, then opens each page in a fresh headless Chromium page
(Debian's ``chromium``, driven by Playwright) and times, per page:

* ``page``: the HTML, the script and the stylesheet loaded (``load`` event);
* ``drawn``: the dashboard has drawn its screen: the bytes its process sent
  over the websocket hold the text that only the finished screen shows.

Each open starts a new dashboard process (``python -m tui.cli``), so ``drawn``
is mostly that process's start. Prints the minimum and median of each.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
CHROMIUM_ARGS += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]


def serve(db: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "serve", "--port", "0", "--db", str(db)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    found = re.search(r"(http://\S+?:\d+)/", proc.stdout.readline())
    assert found, "serve did not start"
    return proc, found.group(1)


def open_once(browser, url: str, drawn: bytes) -> tuple[float, float]:
    """Seconds to the page's load event, and to the dashboard's finished screen."""
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    data = bytearray()
    page.on("websocket", lambda ws: ws.on("framereceived", lambda f: data.extend(f if isinstance(f, bytes) else b"")))
    start = time.perf_counter()
    page.goto(url, wait_until="load")
    loaded = time.perf_counter() - start
    while drawn not in data:
        page.wait_for_timeout(5)
        if time.perf_counter() - start > 60:
            raise SystemExit(f"{url}: not drawn in 60 s")
    done = time.perf_counter() - start
    page.close()
    return loaded, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7, help="times each page is opened (default 7)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("needs Debian's chromium (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        env = {**os.environ, "LOOPDECK_DB": str(db), "PYTHONPATH": str(ROOT)}
        subprocess.run([sys.executable, "-m", "tui.cli", "demo", "--headless"], env=env, cwd=ROOT, check=True)
        run_id = subprocess.run(
            [sys.executable, "-m", "tui.cli", "runs", "--json"], env=env, cwd=ROOT, check=True, capture_output=True
        ).stdout
        run_id = re.search(rb'"id": "([^"]+)"', run_id).group(1).decode()  # type: ignore[union-attr]
        proc, url = serve(db, env)
        pages = {"runs list": (f"{url}/", b"newest first"), "run screen": (f"{url}/runs/{run_id}", b"run_ended")}
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
                open_once(browser, *pages["runs list"])  # warm the server and the browser once
                heading = f"{'page':<12} {'load min':>9} {'load med':>9} {'drawn min':>10} {'drawn med':>10}"
                print(f"{heading}  ({args.runs} opens)")
                for name, (page_url, drawn) in pages.items():
                    times = [open_once(browser, page_url, drawn) for _ in range(args.runs)]
                    loads, draws = [t[0] for t in times], [t[1] for t in times]
                    print(
                        f"{name:<12} {min(loads) * 1000:>7.0f}ms {statistics.median(loads) * 1000:>7.0f}ms "
                        f"{min(draws) * 1000:>8.0f}ms {statistics.median(draws) * 1000:>8.0f}ms"
                    )
                browser.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    print(f"({os.cpu_count()} cores; each open starts a new dashboard process)")


if __name__ == "__main__":
    main()
