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
Once a run screen is built, what the process holds is frozen; when a
screen is rebuilt (a replan) or shown again after another screen, it is
unfrozen, collected once (the previous tree's cycles) and frozen again; when
a run screen goes, it is unfrozen. The dashboard owns its process, so this is
the dashboard's policy, not the engine's: ``core`` never touches the
collector.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def building() -> Iterator[None]:
    """No collection while a run screen builds what it will keep (as it was, after; ``keep`` follows)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def keep(collect: bool) -> None:
    """Freeze what the process holds now; with ``collect``, after collecting what it no longer holds."""
    gc.unfreeze()
    if collect:
        gc.collect()
    gc.freeze()


def release() -> None:
    """A run screen went: what it built is the collector's again."""
    gc.unfreeze()
