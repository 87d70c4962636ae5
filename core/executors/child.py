"""The sub_agent step's executor: its plan runs as a child run, and the child's final output is the step's.

The engine knows nothing of orchestrators: the child run is created, driven
(or, after a crash, gone on with) and awaited through the ``ChildRuns`` port
the orchestrator gives the controller.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from core.errors import LoopdeckError
from core.executors.base import AttemptFailed, ChildRuns, Result, StepCall, until_done

log = logging.getLogger(__name__)

CANCEL_WAIT_S = 30.0  # how long a canceled step waits for its child run to end canceled before stopping its driver


class ChildRunExecutor:
    interruptible = True

    def __init__(self, children: ChildRuns | None, plan: dict[str, Any], leaving: Callable[[], bool]) -> None:
        self.children = children
        self.plan = plan
        self.leaving = leaving  # the driver is stopping with the run unfinished: the child is left for the resume

    async def execute(self, call: StepCall) -> Result:
        children = self.children
        if children is None:
            raise AttemptFailed(
                f'step "{call.key}" runs a child plan, which needs an orchestrator to drive it', retryable=False
            )
        # The child is driven in a task of its own: canceling this attempt must not tear its driver down as if
        # the process were stopping, or the child would be left running in the store.
        child = asyncio.ensure_future(children.run_child(call.run_id, call.key, self.plan))
        try:
            return await asyncio.shield(child)
        except asyncio.CancelledError:
            winding = asyncio.ensure_future(self._wind_down(children, call, child))
            await until_done(winding)
            if not winding.cancelled() and winding.exception() is not None:
                log.error("ending the child run of step %s failed", call.key, exc_info=winding.exception())
            raise

    async def _wind_down(self, children: ChildRuns, call: StepCall, child: asyncio.Future[Result]) -> None:
        """Timed out, or its run ended: the child run is canceled through its driver and ends canceled. A
        driver that stops (ctrl-c, a store that refused a write) stops the child's driver too and leaves the
        child unfinished: the next driver goes on with it."""
        deadline = time.monotonic() + CANCEL_WAIT_S
        while not self.leaving() and not child.done() and (left := deadline - time.monotonic()) > 0:
            try:
                found = await asyncio.wait_for(children.cancel_child(call.run_id, call.key), left)
            except (LoopdeckError, TimeoutError) as exc:
                log.debug("canceling the child run of step %s: %s", call.key, exc)
                found = False
            # canceled: its driver returns once the cancel is durable; not created yet: looked for again
            await asyncio.wait({child}, timeout=left if found else min(left, 0.1))
        child.cancel()  # (nothing if it has ended)
        await asyncio.wait({child})
        if not child.cancelled():
            child.exception()  # its failure is the canceled step's: seen here, never logged as unretrieved
