"""Supervised tasks and callbacks: nothing the engine starts may die unnoticed.

A task started with ``spawn`` or a callback run through ``guarded`` that
dies of an unexpected error fails the run, with the error as its reason
(``crash``), instead of leaving "Task exception was never retrieved" and a
run that never ends. A store or lease error is no bug: the driver stops and
the run stays resumable (``fatal``), as it does when a commit fails.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from core.errors import LeaseLost, LoopdeckError, StaleWrite

log = logging.getLogger("loopdeck.controller")


class Supervisor:
    """What a run's driver needs to stop: its outcome future, and how to end the run on a bug."""

    def __init__(self, run_id: str, stop_attempts: Callable[[], None], fail_run: Callable[[str], bool]) -> None:
        self.run_id = run_id
        self.done: asyncio.Future[Any] | None = None  # resolves with the final status (or the error that stopped it)
        self.stopped = False  # drive returned: late callbacks record nothing
        self._stop_attempts = stop_attempts
        self._fail_run = fail_run  # end the run failed with this reason; False when it is ending already
        self.fatal_error: BaseException | None = None

    def spawn(self, coro: Any, what: str) -> asyncio.Task[Any]:
        """A task whose unexpected death fails the run (never an exception nobody retrieves)."""
        task = asyncio.create_task(coro, name=f"{what} of run {self.run_id}")
        task.add_done_callback(lambda done: self._supervise(done, what))
        return task

    def _supervise(self, task: asyncio.Task[Any], what: str) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.crash(task.exception(), what)  # type: ignore[arg-type]

    def guarded(self, what: str, fn: Callable[..., None], *args: Any) -> None:
        """Call a timer or done-callback; an unexpected error in it fails the run instead of vanishing."""
        try:
            fn(*args)
        except Exception as exc:
            self.crash(exc, what)

    def schedule(self, delay: float, what: str, fn: Callable[..., None], *args: Any) -> asyncio.TimerHandle:
        """``call_later``, guarded."""
        return asyncio.get_running_loop().call_later(delay, self.guarded, what, fn, *args)

    def crash(self, exc: BaseException, what: str) -> None:
        """A bug: end the run failed with the error as its reason (or stop, if even that fails)."""
        if isinstance(exc, LoopdeckError):
            self.fatal(exc)
            return
        log.error("run %s: unexpected error in %s: %s: %s", self.run_id, what, type(exc).__name__, exc, exc_info=exc)
        if self.done is None or self.done.done() or self.stopped:
            return
        try:
            if self._fail_run(f"internal error in {what}: {type(exc).__name__}: {exc}"):
                return
        except Exception as second:
            exc = second
        self.fatal(exc)

    def fatal(self, exc: BaseException) -> None:
        """Stop driving: the store refused a write, so in-memory state can no longer be trusted."""
        if self.done is not None and not self.done.done():
            if isinstance(exc, StaleWrite):
                exc = LeaseLost(f"run {self.run_id}: {exc}; another process may have taken it over")
            self.done.set_exception(exc)
        self.fatal_error = exc
        self._stop_attempts()

    def finish(self, status: Any) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(status)
