"""Navigation as messages: screens ask, the app moves between them (screens never import each other)."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message


@dataclass
class OpenRun(Message):
    """Show this run (from the runs list)."""

    run_id: str


class ShowRuns(Message):
    """Back to the runs list."""


@dataclass
class DriveRun(Message):
    """Drive this run in this process (``R`` on a run nobody drives: what `loopdeck resume` does)."""

    run_id: str
