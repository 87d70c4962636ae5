"""Command start benchmark (not a test): how long a command takes as a whole process.

    python bench/startup.py [--runs 7]

Each command runs as its own process (`python -m tui.cli ...`, what the
`loopdeck` script does), against an existing SQLite database holding a
finished demo run and a run with gates waiting; prints the minimum and median
wall time. `approve` answers a different gate each time: in a run nobody
drives (the answer is decided and committed by the command itself), and in a
run a headless `loopdeck run` drives in another process (the command queues
it, the driver applies it, the command waits for its answer: what an operator
in a second terminal gets). A bare `python -c pass` is the floor.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core import Orchestrator, validate_plan  # noqa: E402


async def prepare(db: Path, gates: int) -> tuple[str, str]:
    """A finished demo run (its gate approved by --headless) and a run with ``gates`` steps waiting."""
    env = {**os.environ, "LOOPDECK_DB": str(db), "PYTHONPATH": str(ROOT)}
    subprocess.run(
        [sys.executable, "-m", "tui.cli", "demo", "--headless"], env=env, cwd=ROOT, check=True, capture_output=True
    )
    async with await Orchestrator.open(str(db), user="bench") as orch:
        demo = (await orch.runs(1))[0]["id"]
        gated = await orch.create_run(
            validate_plan({"steps": [{"key": f"g{i}", "approval": "required"} for i in range(gates)]})
        )
        driving = asyncio.create_task(orch.drive(gated))  # until every gate waits; then nobody drives it
        async for event in orch.follow(gated):
            if event.type == "run_waiting":
                break
        driving.cancel()
        await asyncio.gather(driving, return_exceptions=True)
        return demo, gated


def timed(argv: list[str], env: dict[str, str]) -> float:
    """One run's wall time; a command that fails stops the benchmark (a refusal is not what is measured)."""
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[2:])} failed ({done.returncode}): {done.stderr.strip()}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7, help="times each command runs (default 7)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        env = {**os.environ, "LOOPDECK_DB": str(db), "PYTHONPATH": str(ROOT)}
        cli = [sys.executable, "-m", "tui.cli"]
        demo, gated = asyncio.run(prepare(db, args.runs))
        driven, driver = drive_elsewhere(Path(tmp), env, args.runs)
        gate, driven_gate = iter(range(args.runs)), iter(range(args.runs))
        cases = {
            "python -c pass (the floor)": lambda: [sys.executable, "-c", "pass"],
            "loopdeck --help": lambda: [*cli, "--help"],
            "loopdeck --version": lambda: [*cli, "--version"],
            "loopdeck runs": lambda: [*cli, "runs"],
            "loopdeck show RUN": lambda: [*cli, "show", demo],
            "loopdeck show RUN --json": lambda: [*cli, "show", demo, "--json"],
            "loopdeck approve RUN STEP": lambda: [*cli, "approve", gated, f"g{next(gate)}"],
            "approve, run driven elsewhere": lambda: [*cli, "approve", driven, f"g{next(driven_gate)}"],
        }
        print(f"{'command':<32} {'min ms':>8} {'median ms':>10}   ({args.runs} runs each, {os.cpu_count()} cores)")
        try:
            for name, argv in cases.items():
                times = [timed(argv(), env) for _ in range(args.runs)]
                print(f"{name:<32} {min(times) * 1000:>8.0f} {statistics.median(times) * 1000:>10.0f}")
        finally:
            driver.send_signal(signal.SIGINT)  # (stopped as ctrl-c would: its wake socket removed)
            try:
                driver.wait(30)
            except subprocess.TimeoutExpired:
                driver.kill()
                driver.wait()


def drive_elsewhere(tmp: Path, env: dict[str, str], gates: int) -> tuple[str, subprocess.Popen[bytes]]:
    """A run of ``gates`` gates in a row, driven by a headless `loopdeck run` in another process; returned
    once its first gate waits."""
    plan = tmp / "gates.json"
    steps = [{"key": f"g{i}", "approval": "required", "depends_on": [f"g{i - 1}"] if i else []} for i in range(gates)]
    plan.write_text(json.dumps({"steps": steps}))
    before = set(_run_ids(env))
    driver = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "run", str(plan), "--headless", "--approve", "ask"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for run_id in set(_run_ids(env)) - before:
            if _step_status(env, run_id, "g0") == "waiting_user":
                return run_id, driver
        time.sleep(0.05)
    driver.kill()
    raise SystemExit("the driven run's first gate never opened")


def _step_status(env: dict[str, str], run_id: str, key: str) -> str | None:
    done = subprocess.run(
        [sys.executable, "-m", "tui.cli", "show", run_id, "--json"], env=env, cwd=ROOT, capture_output=True, text=True
    )
    steps = json.loads(done.stdout or "{}").get("steps", [])
    return next((s["status"] for s in steps if s["key"] == key), None)


def _run_ids(env: dict[str, str]) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-m", "tui.cli", "runs", "--json"], env=env, cwd=ROOT, capture_output=True, text=True
    )
    data = json.loads(done.stdout or "[]")
    return [r["id"] for r in (data["runs"] if isinstance(data, dict) else data)]


if __name__ == "__main__":
    main()
