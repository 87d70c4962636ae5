"""Dashboard benchmark (not a test): a 5,000-step run receiving 2,000 events a second.

    python bench/ui.py [--steps 5000] [--rate 2000] [--seconds 10] [--here | --elsewhere] [--every S]

A writer task commits events to a real SQLite store at the given rate (in
batches every 50 ms, as a busy controller would), while the real dashboard,
attached to that run in Textual's headless mode, folds and renders them.
Reports how far the screen lags behind the stream (from an event's commit to
the refresh that showed it) and how long a keypress takes meanwhile.

The writer runs in the dashboard's process without telling it (the dashboard
finds the events by reading the store: its poll), or with ``--here`` as the
run's own controller would (its event bus), or with ``--elsewhere`` in another
process, as a headless `loopdeck run` in a second terminal would (its commits
wake the dashboard through ``core.store.wakes``). Commit times are read on the
monotonic clock, which every process of the host shares.

Keys are pressed one after another, each 0.1 s after the process went idle
from the last; so a faster dashboard is also pressed more often. ``--every S``
presses one every S seconds instead (S above the slowest press), for the same
load whichever code is measured: for comparing two versions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import Event, Orchestrator, validate_plan
from core.store.batch import WriteBatch
from tui.dashboard.app import LoopdeckApp
from tui.dashboard.screens.run import REFRESH_S, RunScreen


def big_plan(n: int) -> dict:
    steps = [{"key": f"s{i:05d}", "depends_on": [f"s{i // 4:05d}"] if i else []} for i in range(n)]
    return {"agents": {"sim": {"kind": "sim", "latency_ms": 0}}, "policy": {"max_concurrency": 50}, "steps": steps}


async def produce(
    orch: Orchestrator, run_id: str, n: int, rate: int, seconds: float, commits: dict[int, float], here: bool
) -> int:
    """Commit ``rate`` events a second for ``seconds`` (50 steps running at a time); record commit times."""
    per_tick = max(1, rate // 20)  # batches every 50 ms
    sent, started = 0, time.perf_counter()
    cursor = 0  # like a controller with 50 slots: start step i, finish step i - 50
    while time.perf_counter() - started < seconds:
        batch = WriteBatch()
        now = time.time()
        for _ in range(max(1, per_tick // 2)):
            batch.event(run_id, "step_started", f"s{cursor % n:05d}", {"attempt": 1 + cursor // n, "agent": "sim"}, now)
            if cursor >= 50:
                done = cursor - 50
                batch.event(
                    run_id,
                    "step_succeeded",
                    f"s{done % n:05d}",
                    {"attempt": 1 + done // n, "tokens": {"prompt": 3, "completion": 2}},
                    now,
                )
            cursor += 1
        ids = await orch.store.write(batch)
        committed = time.perf_counter()
        if here:  # a run driven in the dashboard's own process: its controller publishes what it committed
            rows = zip(ids, batch.events, batch.payloads, strict=True)
            orch.bus.publish(Event(i, run_id, row["type"], row["step_key"], payload) for i, row, payload in rows)
        for id_ in ids:
            commits[id_] = committed
        sent += len(ids)
        await asyncio.sleep(max(0.0, started + (sent / rate) - time.perf_counter()))
    return sent


async def produce_elsewhere(db: str, run_id: str, n: int, rate: int, seconds: float) -> None:
    """``--produce``: the writer in a process of its own; prints each event's id and commit time."""
    commits: dict[int, float] = {}
    async with await Orchestrator.open(db) as orch:
        await produce(orch, run_id, n, rate, seconds, commits, here=False)
    print(json.dumps(commits))


async def main(
    n: int, rate: int, seconds: float, here: bool, elsewhere: bool = False, every: float | None = None
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = f"sqlite+aiosqlite:///{Path(tmp) / 'ui.db'}"
        async with await Orchestrator.open(db) as setup:
            run_id = await setup.create_run(validate_plan(big_plan(n)))
        app = LoopdeckApp(db, run_id=run_id, user="bench")
        renders: list[tuple[float, int]] = []
        opening = time.perf_counter()
        async with app.run_test(size=(160, 48)) as pilot:
            for _ in range(10_000):
                if isinstance(app.screen, RunScreen) and app.screen.view is not None:
                    break
                await asyncio.sleep(0.001)
            opened = time.perf_counter() - opening  # from the app's start to the run's tree built
            screen = app.screen
            original = screen.render_view

            def timed_render() -> None:
                original()
                if screen.view is not None:
                    renders.append((time.perf_counter(), screen.view.last_event_id))

            screen.render_view = timed_render  # type: ignore[method-assign]
            for timer in list(screen._timers):  # re-arm the 10 Hz refresh on the instrumented method
                timer.stop()
            screen.set_interval(REFRESH_S, timed_render)

            commits: dict[int, float] = {}
            if elsewhere:
                argv = [sys.executable, __file__, "--produce", db, run_id, "--steps", str(n), "--rate", str(rate)]
                child = await asyncio.create_subprocess_exec(
                    *argv, "--seconds", str(seconds), stdout=asyncio.subprocess.PIPE
                )
                producer = asyncio.create_task(child.communicate())
            else:
                producer = asyncio.create_task(produce(app.orch, run_id, n, rate, seconds, commits, here))
            await pilot.pause(1.0)
            keys, handled = [], []
            tree = screen.query_one("#dag")
            while not producer.done():
                began, line = time.perf_counter(), tree.cursor_line
                pressing = asyncio.create_task(pilot.press("down"))
                while tree.cursor_line == line and not pressing.done():
                    await asyncio.sleep(0.001)
                handled.append(time.perf_counter() - began)  # the key reached the tree: its cursor moved
                await pressing
                keys.append(time.perf_counter() - began)  # Textual's pilot: until the process went idle
                if every is None:
                    await pilot.pause(0.1)
                else:
                    await asyncio.sleep(max(0.0, began + every - time.perf_counter()))
            if elsewhere:
                out, _ = await producer
                commits = {int(i): at for i, at in json.loads(out).items()}
                sent = len(commits)
            else:
                sent = await producer
            await pilot.pause(0.5)

        lags = []
        shown = 0
        for at, last_id in renders:
            newly = [i for i in range(shown + 1, last_id + 1) if i in commits]
            lags.extend(at - commits[i] for i in newly)
            shown = max(shown, last_id)
        lags.sort()
        print(f"{n:,} steps, {sent:,} events in {seconds:.0f} s ({sent / seconds:,.0f}/s), {len(renders)} refreshes")
        print(f"the dashboard opened the run (started, read it, built its tree) in {opened * 1000:.0f} ms")
        print(
            f"screen lag behind the stream: median {statistics.median(lags) * 1000:.0f} ms, "
            f"p95 {lags[int(len(lags) * 0.95)] * 1000:.0f} ms, max {lags[-1] * 1000:.0f} ms "
            f"({len(lags):,} events shown)"
        )
        print(
            f"keypress (cursor down) while streaming, until the cursor moved: median "
            f"{statistics.median(handled) * 1000:.1f} ms, max {max(handled) * 1000:.1f} ms over {len(handled)} presses"
        )
        print(
            f"keypress until the process was idle again (Textual's pilot.press; the producer writing in the same "
            f"process keeps it busy): median {statistics.median(keys) * 1000:.1f} ms, max {max(keys) * 1000:.1f} ms"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument(
        "--here", action="store_true", help="the run is driven in the dashboard's process: its commits are published"
    )
    parser.add_argument("--elsewhere", action="store_true", help="the run is written by another process")
    parser.add_argument(
        "--every", type=float, metavar="S", help="press a key every S seconds (the same load for any code)"
    )
    parser.add_argument("--produce", nargs=2, metavar=("DB", "RUN"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.produce:
        asyncio.run(produce_elsewhere(*args.produce, args.steps, args.rate, args.seconds))
    else:
        asyncio.run(main(args.steps, args.rate, args.seconds, args.here, args.elsewhere, args.every))
