"""A command's end without the interpreter's teardown.

When a command has returned, CPython would still take the heap it loaded apart
(SQLAlchemy, pydantic and the plan's models, Rich: some 60,000 objects that
the collector holds): a last full collection, then every module cleared and
every object freed one by one. That took 70–100 ms after an offline
``approve`` had printed its answer, a quarter of the command, for nothing a
user sees: the operating system takes the memory back at once anyway.

So ``exit_now`` does what the interpreter's exit does first and leaves the
rest to the operating system: it waits for the threads that are not daemons
(the store's readers stopping, say), runs the ``atexit`` handlers (logging's
flush, an OpenTelemetry provider's shutdown, coverage's data), flushes the
standard streams, then calls ``os._exit``. The first two are CPython's own
functions, the ones its exit calls (``threading._shutdown``,
``atexit._run_exitfuncs``); where either is missing, or on another Python
(PyPy flushes files left open at its exit, outside ``atexit``), it exits as
usual. Files the command wrote are closed by then: the store closes in the
command, and ``write_text`` uses ``with``.
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
    wait_for_threads = getattr(threading, "_shutdown", None)
    run_handlers = getattr(atexit, "_run_exitfuncs", None)
    if sys.implementation.name != "cpython" or wait_for_threads is None or run_handlers is None:
        sys.exit(code)
    with contextlib.suppress(KeyboardInterrupt):  # (a second ctrl+c while a thread is waited for: no traceback)
        wait_for_threads()
    run_handlers()
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:  # (None: started with it closed, `2>&-`)
            with contextlib.suppress(OSError, ValueError):  # a closed pipe (`loopdeck runs | head`): nothing to add
                stream.flush()
    os._exit(code)
