"""What a run screen builds is kept out of the garbage collector's full passes.

A 20,000-step run's screen holds some 400,000 objects (the tree's nodes and
labels, the view model) for as long as it is shown. CPython's full
collection walks every one of them each time enough new objects have
survived, which a streaming run makes happen every second or so: pauses of
90-150 ms (``bench/ui.py --steps 20000``), each one a keypress that waits.
``gc.freeze`` moves what the process holds into a generation the collector
skips; reference counting still frees what is no longer used (only garbage
in a cycle waits for an unfreeze).

While a run screen builds, the collector pauses: its full passes walked the
growing heap again and again (0.4 s of a 20,000-step run's 1.2 s opening).
Each build then collects once, with nothing frozen, at the moment that costs
least: before a first build (what an earlier screen left), after a rebuild
(a replan or a filter: the tree it replaced); and freezes what the process
holds. A run screen that goes unfreezes everything (``release``: an app that
exits leaves nothing frozen); if it was above another, its tree is collected
once it is gone and what the one below holds is frozen again (``settle``).
The dashboard owns its process, so this is its policy (what an engine
driving a run in the same process holds is frozen with the rest, and freed
the same way); ``core`` never touches the collector.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def building(rebuilding: bool, kept: Callable[[], bool]) -> Iterator[None]:
    """A run screen reads and builds what it will keep: no collection meanwhile; one full collection, before
    a first build or after a rebuild; then what the process holds is frozen, if the screen is still ``kept``
    (a build canceled by the screen going freezes nothing)."""
    gc.unfreeze()
    if not rebuilding:
        gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if rebuilding:
            gc.unfreeze()  # (another build may have frozen meanwhile, the replaced tree with it)
            gc.collect()
        if kept():
            gc.freeze()
        if enabled:
            gc.enable()


def settle() -> None:
    """What is frozen may have died (a run screen above another went): collect it, freeze the rest again."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def release() -> None:
    """A run screen went: what it built is the collector's again."""
    gc.unfreeze()
