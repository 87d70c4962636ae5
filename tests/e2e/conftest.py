"""Run the real CLI in subprocesses against a real SQLite file."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


class Cli:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.db = tmp / "e2e.db"
        self.env = {
            **os.environ,
            "LOOPDECK_DB": str(self.db),
            "LOOPDECK_LEASE_S": "3",
            "PYTHONPATH": str(ROOT),
            "COLUMNS": "200",
        }

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "tui.cli", *args]

    def __call__(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*args), env=self.env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)

    def spawn(self, *args: str) -> subprocess.Popen[str]:
        with open(self.tmp / f"spawn-{time.monotonic_ns()}.log", "w+") as log:  # the child keeps its own copy
            return subprocess.Popen(
                self.argv(*args), env=self.env, stdout=subprocess.PIPE, stderr=log, text=True, cwd=ROOT
            )

    def write_plan(self, data: dict[str, Any], name: str = "plan.yaml") -> Path:
        path = self.tmp / name
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    def query(self, sql: str, *params: Any) -> list[tuple]:
        if not self.db.exists():
            return []
        with sqlite3.connect(self.db, timeout=10) as conn:
            try:
                return conn.execute(sql, params).fetchall()
            except sqlite3.OperationalError:
                return []

    def wait_until(self, sql: str, predicate, timeout: float = 30, *params: Any) -> list[tuple]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = self.query(sql, *params)
            if predicate(rows):
                return rows
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting on: {sql}")

    def show(self, run_id: str) -> dict[str, Any]:
        result = self("show", run_id, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)
