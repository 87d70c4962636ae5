"""A command's end without the interpreter's teardown.

When a command has returned, CPython would still take the heap it loaded apart
(SQLAlchemy, pydantic and the plan's models, Rich: some 60,000 objects that
the collector holds): a last full collection, then every module cleared and
every object freed one by one. That took 70–100 ms after an offline
``approve`` had printed its answer, a quarter of the command, for nothing a
user sees: the operating system takes the memory back at once anyway.

So ``exit_now`` does what a normal exit does first and leaves the rest to the
operating system: the ``atexit`` handlers (logging's flush, an OpenTelemetry
provider's shutdown, coverage's data), the standard streams flushed, then
``os._exit``. While a thread other than the main one still runs, it exits
normally instead, so that thread is waited for as ever (the interpreter joins
its non-daemon threads before any handler). Files the command wrote are closed
by then: the store closes in the command, and ``write_text`` uses ``with``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
from typing import NoReturn


def exit_now(code: int) -> NoReturn:
    """End the process with ``code`` after the atexit handlers and a flush, without tearing the heap down."""
    run_handlers = getattr(atexit, "_run_exitfuncs", None)  # (CPython's own, what its exit calls)
    if threading.active_count() > 1 or run_handlers is None:
        sys.exit(code)
    run_handlers()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe (`loopdeck runs | head`): nothing to add
            stream.flush()
    os._exit(code)
