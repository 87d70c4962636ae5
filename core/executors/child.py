"""The sub_agent step's executor: its plan runs as a child run, and the child's final output is the step's.

The engine knows nothing of orchestrators: the child run is created, driven
(or, after a crash, gone on with) and awaited through the ``ChildRuns`` port
the orchestrator gives the controller.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from core.executors.base import AttemptFailed, ChildRuns, Result, StepCall

CANCEL_WAIT_S = 30.0  # how long a canceled step waits for its child run to end canceled before stopping its driver


class ChildRunExecutor:
    interruptible = True

    def __init__(self, children: ChildRuns | None, plan: dict[str, Any], leaving: Callable[[], bool]) -> None:
        self.children = children
        self.plan = plan
        self.leaving = leaving  # the driver is stopping with the run unfinished: the child is left for the resume

    async def execute(self, call: StepCall) -> Result:
        if self.children is None:
            raise AttemptFailed(
                f'step "{call.key}" runs a child plan, which needs an orchestrator to drive it', retryable=False
            )
        # The child is driven in a task of its own: canceling this attempt must not tear its driver down as if
        # the process were stopping, or the child would be left running in the store.
        child = asyncio.ensure_future(self.children.run_child(call.run_id, call.key, self.plan))
        try:
            return await asyncio.shield(child)
        except asyncio.CancelledError:
            await _to_its_end(self._wind_down(call, child))
            raise

    async def _wind_down(self, call: StepCall, child: asyncio.Future[Result]) -> None:
        """Canceled, timed out, or its run ended: the child run is canceled through its driver and ends
        canceled. A driver that stops (ctrl-c, a worker handing the run back) stops the child's driver too and
        leaves the child unfinished: the next driver goes on with it."""
        deadline = time.monotonic() + CANCEL_WAIT_S
        while not self.leaving() and not child.done() and time.monotonic() < deadline:
            assert self.children is not None
            with contextlib.suppress(Exception):  # (none yet, or ended already: looked for again)
                await asyncio.wait_for(self.children.cancel_child(call.run_id, call.key), CANCEL_WAIT_S)
            await asyncio.wait({child}, timeout=0.1)  # its driver returns once the cancel is durable
        child.cancel()  # (nothing if it has ended)
        await asyncio.wait({child})
        if not child.cancelled():
            child.exception()  # its failure is the canceled step's: seen here, never logged as unretrieved


async def _to_its_end(work: Awaitable[None]) -> None:
    """Await ``work`` to its end even if this task is canceled again meanwhile (a driver's close cancels every
    attempt once more): the parent's driver returns only once its child run has ended or been left."""
    task = asyncio.ensure_future(work)
    while not task.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait({task})
    task.result()
