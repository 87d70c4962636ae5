"""A command's start without the collector (tui/cli/startup.py), on the real collector of this process."""

from __future__ import annotations

import asyncio
import gc
import io
import weakref
from contextlib import redirect_stdout

import pytest

from tui.cli import main, startup


class Cycle:
    def __init__(self) -> None:
        self.itself = self


@pytest.fixture(autouse=True)
def collector_on():
    gc.unfreeze()  # (whatever an earlier test in this process left)
    gc.enable()
    yield
    gc.enable()


def test_no_collection_while_a_command_starts_and_none_of_what_it_loaded_is_walked_after():
    with startup.Startup() as start:
        assert not gc.isenabled()
        loaded = [[i] for i in range(50_000)]  # what the command loads: it lives on
        cycle = weakref.ref(Cycle())
        start.end()
        gc.disable()  # (a look before any young collection: the next one would walk whatever is young)
        young = {id(o) for o in gc.get_objects(generation=0)}
        gc.enable()
    assert not any(id(o) in young for o in loaded[::1000])  # moved on at once, without a walk
    assert gc.isenabled() and gc.get_freeze_count() == 0
    gc.collect()
    assert cycle() is None  # (and a cycle made meanwhile is still collected)


def test_a_command_still_running_after_its_start_collects_as_usual(monkeypatch):
    monkeypatch.setattr(startup, "STARTUP_S", 0.05)

    async def long_command() -> int:
        assert not gc.isenabled()
        await asyncio.sleep(0.3)
        return 0 if gc.isenabled() else 1

    with startup.Startup() as start:
        assert asyncio.run(start.run(long_command())) == 0


def test_main_leaves_the_collector_as_it_found_it(monkeypatch, tmp_path):
    """Tests (and tools) call ``main`` in-process: off stays off, on stays on, whatever the command did."""
    monkeypatch.setenv("LOOPDECK_DB", str(tmp_path / "none.db"))
    for enabled in (True, False):
        (gc.enable if enabled else gc.disable)()
        with redirect_stdout(io.StringIO()), pytest.raises(SystemExit):
            main(["--help"])
        assert gc.isenabled() is enabled
        assert main(["runs"]) == 2  # (no database: refused in its event loop)
        assert gc.isenabled() is enabled and gc.get_freeze_count() == 0
