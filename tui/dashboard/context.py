"""What every screen of the dashboard works with, handed to it at construction.

Screens never reach for the app: they act through the orchestrator (the
engine's one facade), show time by the dashboard's clock (tests freeze it),
and respect read-only mode, all from here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from core import Orchestrator


@dataclass
class DashboardContext:
    orch: Orchestrator
    clock: Callable[[], float]
    read_only: bool = False

    @property
    def user(self) -> str:
        """Who the actions are recorded as."""
        return self.orch.user
