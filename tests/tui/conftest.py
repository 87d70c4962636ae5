"""Pilot tests press keys without waiting for an idle process.

Textual's ``pilot.press`` (``App._press_keys``, textual 8.2.8, pinned) waits after each key until the whole
process is idle, twice, up to a second each time. A dashboard test drives its run in the same process, so the
process is rarely idle: each key cost up to two seconds, about a third of the dashboard tests' time. Tests
that use ``quick_keys`` wait for what they expect to see (``until``) instead. The snapshot tests keep
Textual's waits: they take their picture right after the keys.
"""

from __future__ import annotations

import asyncio
import gc

import pytest
import textual.app


async def _next_turn(*_args: object, **_kwargs: object) -> None:
    await asyncio.sleep(0)  # the key's event is queued; the app handles it on its own turn


@pytest.fixture
def quick_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(textual.app, "wait_for_idle", _next_turn)


@pytest.fixture(autouse=True)
def nothing_left_frozen():
    """A dashboard that exits leaves nothing frozen out of the collector (tui/dashboard/heap.py): the process
    may go on (a test, a command after it)."""
    yield
    frozen = gc.get_freeze_count()
    gc.unfreeze()
    assert frozen == 0, f"{frozen} objects left frozen"
