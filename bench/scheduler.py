"""Scheduler benchmark (not a test): throughput and makespan against a greedy list schedule.

    python bench/scheduler.py            # the figures reported in the README
    python bench/scheduler.py --quick    # smaller plans, for a quick look

Part 1: zero-latency plans of 1,000 and 10,000 steps in two shapes (chains
and joins; a pure chain, where every step waits for the one before) at 5 and
50 slots, driven to the end with every transition durable in a real SQLite
file; prints wall time per step and the growth exponent k of wall ∝ steps^k
between the two sizes (1.00: a constant cost per step).

Part 2: plans with heterogeneous latencies (9 in 10 steps take 50 ms, 1 in 10
take 500 ms) in three shapes — layered, fan-out/fan-in, wide — driven for real,
each with the policy's two start orders (plan; critical_path: the longest chain
first), and the makespan divided by that of a greedy list schedule of the same
plan simulated in virtual time (start any ready step, in plan order, whenever a
slot is free). 1.00 means no scheduling overhead at all.

Part 3 (the floor): a 10,000-step pure chain driven once while every group's
hot statements (step updates, events, spans, run updates: the writer's
executemany) and their rows are recorded (not the rare extras beside them, a
lease renewed every few seconds), then the same statements replayed by ``sqlite3``
alone on a copy of the database as it was before the drive, one transaction
per group as the writer committed them (and its checkpoint every 100 groups):
what the durable writes of a chained step cost with no engine, no asyncio and
no SQLAlchemy around them, beside what the whole drive cost.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import math
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import Orchestrator, validate_plan

FAST_MS, SLOW_MS = 50, 500


def zero_latency_plan(n: int, concurrency: int, shape: str = "joins") -> dict[str, Any]:
    """``joins``: a mix of chains and joins so the dependency index does real work; ``chain``: one long chain."""
    steps = []
    for i in range(n):
        deps = []
        if shape == "chain":
            deps = [f"s{i - 1}"] if i else []
        else:
            if i >= 10:
                deps.append(f"s{i - 10}")
            if i % 7 == 0 and i >= 25:
                deps.append(f"s{i - 25}")
        steps.append({"key": f"s{i}", "depends_on": deps})
    return {
        "agents": {"sim": {"kind": "sim", "latency_ms": 0}},
        "policy": {"max_concurrency": concurrency, "max_step_attempts": 1},
        "steps": steps,
    }


def shaped_plan(shape: str, n: int, concurrency: int, seed: int = 7) -> dict[str, Any]:
    rng = random.Random(seed)
    steps: list[dict[str, Any]] = []

    def add(key: str, deps: list[str]) -> None:
        agent = "slow" if rng.random() < 0.1 else "fast"
        steps.append({"key": key, "agent": agent, "depends_on": deps})

    if shape == "wide":
        for i in range(n):
            add(f"w{i}", [])
    elif shape == "layered":
        width = 12
        for i in range(n):
            layer = i // width
            prev = [f"l{j}" for j in range((layer - 1) * width, layer * width)] if layer else []
            add(f"l{i}", rng.sample(prev, min(2, len(prev))) if prev else [])
    elif shape == "fanout":
        groups = n // 22
        prev_join: list[str] = []
        for g in range(groups):
            add(f"g{g}_src", prev_join)
            for i in range(20):
                add(f"g{g}_{i}", [f"g{g}_src"])
            add(f"g{g}_join", [f"g{g}_{i}" for i in range(20)])
            prev_join = [f"g{g}_join"] if g % 2 else []  # every other group waits for the previous join
    else:
        raise ValueError(shape)
    return {
        "agents": {"fast": {"kind": "sim", "latency_ms": FAST_MS}, "slow": {"kind": "sim", "latency_ms": SLOW_MS}},
        "policy": {"max_concurrency": concurrency, "max_step_attempts": 1},
        "steps": steps,
    }


def greedy_makespan(plan: dict[str, Any]) -> float:
    """Greedy list schedule in virtual time: whenever a slot is free, start the ready step of lowest index."""
    steps = plan["steps"]
    slots = plan["policy"]["max_concurrency"]
    latency = {name: cfg["latency_ms"] / 1000 for name, cfg in plan["agents"].items()}
    index = {s["key"]: i for i, s in enumerate(steps)}
    unmet = {s["key"]: len(s["depends_on"]) for s in steps}
    dependents: dict[str, list[str]] = {s["key"]: [] for s in steps}
    for s in steps:
        for d in s["depends_on"]:
            dependents[d].append(s["key"])
    ready = [(index[k], k) for k, n in unmet.items() if n == 0]
    heapq.heapify(ready)
    running: list[tuple[float, str]] = []
    now = 0.0
    while ready or running:
        while ready and len(running) < slots:
            _, key = heapq.heappop(ready)
            heapq.heappush(running, (now + latency[steps[index[key]]["agent"]], key))
        now, key = heapq.heappop(running)
        for child in dependents[key]:
            unmet[child] -= 1
            if unmet[child] == 0:
                heapq.heappush(ready, (index[child], child))
    return now


async def drive(plan_data: dict[str, Any], db: Path) -> tuple[float, float, str, float]:
    """Drive a plan; return (wall seconds of drive, makespan from run start to end, status, seconds from
    opening the store to closing it: the plan validated, the run created and driven, the store closed)."""
    opened = time.perf_counter()
    async with await Orchestrator.open(str(db)) as orch:
        run_id = await orch.create_run(validate_plan(plan_data))
        t0 = time.perf_counter()
        status = await orch.drive(run_id)
        wall = time.perf_counter() - t0
        reading = time.perf_counter()
        events = await orch.store.events_since(run_id, 0, limit=10_000_000)
        read_s = time.perf_counter() - reading  # the benchmark's own read: not the run's
    whole = time.perf_counter() - opened - read_s
    first = next(e.created_at for e in events if e.type == "step_started")
    last = max(e.created_at for e in events if e.type in ("step_succeeded", "step_failed"))
    return wall, last - first, status.value, whole


def part1(sizes: list[int], concurrency: list[int], shapes: tuple[str, ...] = ("joins", "chain")) -> None:
    print("Part 1 — zero-latency plans, every transition committed to SQLite (WAL)")
    print(f"{'shape':>6} {'steps':>8} {'slots':>6} {'wall s':>8} {'µs/step':>9} {'status':>10}")
    for shape in shapes:
        for c in concurrency:
            walls = []
            for n in sizes:
                with tempfile.TemporaryDirectory() as tmp:
                    wall, _, status, _ = asyncio.run(drive(zero_latency_plan(n, c, shape), Path(tmp) / "b.db"))
                walls.append(wall)
                print(f"{shape:>6} {n:>8} {c:>6} {wall:>8.2f} {wall / n * 1e6:>9.0f} {status:>10}")
            if len(walls) > 1:  # wall ∝ steps^k: k = 1.00 is a constant cost per step
                k = math.log(walls[-1] / walls[0]) / math.log(sizes[-1] / sizes[0])
                print(f"{'':>6} {'':>8} {'':>6} growth exponent k = {k:.2f} ({sizes[0]:,} → {sizes[-1]:,} steps)")


def part2(n: int, concurrency: int) -> None:
    print(f"\nPart 2 — heterogeneous latencies ({FAST_MS} ms, 1 in 10 {SLOW_MS} ms), max_concurrency {concurrency}")
    print("(whole: from opening a new database file to closing it — validate, create, drive, close;")
    print(" start order: the policy's start_order, plan order or the longest chain first)")
    print(
        f"{'shape':>8} {'steps':>6} {'start order':>13} {'greedy s':>9} {'loopdeck s':>11} {'ratio':>7} "
        f"{'whole s':>8} {'ratio':>7}"
    )
    for shape in ("layered", "fanout", "wide"):
        for order in ("plan", "critical_path"):
            data = shaped_plan(shape, n, concurrency)
            data["policy"]["start_order"] = order
            ideal = greedy_makespan(data)  # (in plan order, whichever order loopdeck takes)
            with tempfile.TemporaryDirectory() as tmp:
                _, makespan, status, whole = asyncio.run(drive(data, Path(tmp) / "b.db"))
            assert status == "succeeded", status
            print(
                f"{shape:>8} {len(data['steps']):>6} {order:>13} {ideal:>9.3f} {makespan:>11.3f} "
                f"{makespan / ideal:>7.3f} {whole:>8.3f} {whole / ideal:>7.3f}"
            )


def floor(n: int) -> None:
    print(f"\nPart 3 — the floor: a {n:,}-step pure chain's own writes replayed by sqlite3 alone")
    from core.store import writer

    groups: list[list[tuple[str, list[Any]]]] = []

    class Recording:
        """The driver's cursor, each executemany recorded into the group being applied."""

        def __init__(self, cursor: Any) -> None:
            self._cursor = cursor

        def executemany(self, sql: str, params: list[Any]) -> Any:
            groups[-1].append((sql, list(params)))
            return self._cursor.executemany(sql, params)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._cursor, name)

    real_apply, real_cursor = writer.apply_group, writer._sqlite_cursor

    def apply_group(conn: Any, batches: Any) -> Any:
        groups.append([])
        return real_apply(conn, batches)

    with tempfile.TemporaryDirectory() as tmp:
        db, before = Path(tmp) / "b.db", Path(tmp) / "before.db"

        async def drive_recorded() -> tuple[float, str]:
            async with await Orchestrator.open(str(db)) as orch:
                run_id = await orch.create_run(validate_plan(zero_latency_plan(n, 5, "chain")))
                await orch.store.close()  # (a copy of the file as the drive starts from: checkpointed, closed)
                shutil.copyfile(db, before)
            async with await Orchestrator.open(str(db)) as orch:
                writer.apply_group, writer._sqlite_cursor = apply_group, lambda conn: Recording(real_cursor(conn))
                try:
                    t0 = time.perf_counter()
                    status = await orch.drive(run_id)
                    return time.perf_counter() - t0, status.value
                finally:
                    writer.apply_group, writer._sqlite_cursor = real_apply, real_cursor

        wall, status = asyncio.run(drive_recorded())
        assert status == "succeeded", status
        conn = sqlite3.connect(before, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # (the store's)
        conn.execute("PRAGMA wal_autocheckpoint=0")  # (the writer's: it checkpoints every 100 groups)
        t0 = time.perf_counter()
        for i, group in enumerate(groups, 1):
            conn.execute("BEGIN")
            for sql, params in group:
                conn.executemany(sql, params)
            conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
            conn.execute("COMMIT")
            if i % 100 == 0:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        replay = time.perf_counter() - t0
        conn.close()
    rows = sum(len(params) for group in groups for _, params in group)
    print(f"{len(groups):,} groups, {rows / n:.1f} rows a step")
    print(f"the drive (its writes recorded): {wall / n * 1e6:.0f} µs/step")
    print(f"the same writes replayed alone: {replay / n * 1e6:.0f} µs/step")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller plans")
    args = parser.parse_args()
    if args.quick:
        part1([300, 1_000], [5])
        part2(110, 8)
        floor(1_000)
    else:
        part1([1_000, 10_000], [5, 50])
        part2(440, 8)
        floor(10_000)


if __name__ == "__main__":
    main()
