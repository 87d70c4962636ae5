"""Worker-pool benchmark (not a test): throughput with 1, 2 and 4 workers on PostgreSQL, and event latency.

    LOOPDECK_BENCH_PG=postgresql+asyncpg://postgres@127.0.0.1:55432/postgres python bench/workers.py
    (bash .ci/postgres.sh starts such a server and prints its URL; --quick for a smaller run)

Part 1: RUNS runs of a 6-step plan (fan-out, fan-in; simulated agents of 20 ms)
are submitted to a fresh database, then N worker processes (``loopdeck
worker``) drive them. Throughput is measured from the first step started to
the last run ended (event timestamps), so process start-up is left out.

Part 2: one worker drives runs while this process follows one of them the way
``loopdeck attach`` does (LISTEN/NOTIFY wakes it, then it reads the event
table); the latency is the time from an event's creation in the worker (a
moment before its commit) to the follower having it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core import Orchestrator, validate_plan  # noqa: E402

PLAN = {
    "goal": "bench",
    "agents": {"sim": {"kind": "sim", "latency_ms": 20}},
    "policy": {"max_concurrency": 4},
    "steps": [
        {"key": "a"},
        *({"key": f"b{i}", "depends_on": ["a"]} for i in range(4)),
        {"key": "c", "depends_on": [f"b{i}" for i in range(4)]},
    ],
}
STEPS_PER_RUN = len(PLAN["steps"])


async def fresh_database(server: str) -> str:
    name = f"loopdeck_bench_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(server.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    return server.rsplit("/", 1)[0] + "/" + name


async def drop_database(server: str, url: str) -> None:
    conn = await asyncpg.connect(server.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")
    finally:
        await conn.close()


def start_workers(url: str, n: int, max_runs: int) -> list[subprocess.Popen[bytes]]:
    env = {**os.environ, "LOOPDECK_DB": url, "PYTHONPATH": str(ROOT)}
    return [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tui.cli",
                "worker",
                "--name",
                f"bench{i}",
                "--max-runs",
                str(max_runs),
                "--poll",
                "0.5",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=ROOT,
        )
        for i in range(n)
    ]


def stop(workers: list[subprocess.Popen[bytes]]) -> None:
    for proc in workers:
        proc.send_signal(signal.SIGTERM)
    for proc in workers:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


async def throughput(server: str, n_workers: int, runs: int) -> tuple[float, float]:
    url = await fresh_database(server)
    orch = await Orchestrator.open(url)
    try:
        plan = validate_plan(PLAN)
        run_ids = [await orch.create_run(plan) for _ in range(runs)]
        workers = start_workers(url, n_workers, max_runs=8)
        try:
            while True:
                listed = await orch.runs(limit=runs)
                if all(r["status"] == "succeeded" for r in listed):
                    break
                if any(r["status"] in ("failed", "canceled", "rejected") for r in listed):
                    raise SystemExit("a benchmark run did not succeed")
                await asyncio.sleep(0.2)
        finally:
            stop(workers)
        first, last = float("inf"), 0.0
        for run_id in run_ids:
            events = await orch.store.events_since(run_id, 0)
            first = min(first, min(e.created_at for e in events if e.type == "step_started"))
            last = max(last, max(e.created_at for e in events if e.type == "run_ended"))
        elapsed = last - first
        return runs / elapsed, runs * STEPS_PER_RUN / elapsed
    finally:
        await orch.close()
        await drop_database(server, url)


async def latency(server: str, runs: int) -> list[float]:
    url = await fresh_database(server)
    orch = await Orchestrator.open(url)
    samples: list[float] = []
    try:
        plan = validate_plan(PLAN)
        workers = start_workers(url, 1, max_runs=2)
        try:
            await asyncio.sleep(1.5)  # let the worker start up and wait for work
            for _ in range(runs):
                run_id = await orch.create_run(plan)
                async for event in orch.follow(run_id):
                    samples.append(time.time() - event.created_at)
                    if event.type == "run_ended":
                        break
        finally:
            stop(workers)
    finally:
        await orch.close()
        await drop_database(server, url)
    return [s for s in samples if s >= 0]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    server = os.environ.get("LOOPDECK_BENCH_PG") or os.environ.get("LOOPDECK_TEST_PG")
    if not server:
        raise SystemExit("set LOOPDECK_BENCH_PG to a PostgreSQL URL (bash .ci/postgres.sh prints one)")
    runs = 60 if args.quick else 300
    print(
        f"{runs} runs of {STEPS_PER_RUN} steps (20 ms simulated agents), workers of 8 runs each, "
        f"on {os.cpu_count()} cores"
    )
    for n in (1, 2, 4):
        runs_s, steps_s = await throughput(server, n, runs)
        print(f"  {n} worker(s): {runs_s:7.1f} runs/s  {steps_s:8.1f} steps/s")
    samples = await latency(server, 5 if args.quick else 20)
    samples.sort()
    p95 = samples[int(len(samples) * 0.95) - 1]
    print(
        f"event latency, worker -> follower in another process ({len(samples)} events): "
        f"median {statistics.median(samples) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms, max {samples[-1] * 1000:.1f} ms"
    )


if __name__ == "__main__":
    asyncio.run(main())
