"""The command channel: an action on a run driven by another process goes through the store.

The sender queues ``(kind, payload)`` for the run, and waits for its answer
(applied, or refused and why) on NOTIFY, with a short poll as the fallback
(SQLite, or a lost notification). The driving process serves the channel:
it wakes on NOTIFY (or its poll), applies each queued command with its
handler, and writes the answer. The live controller's inbox and the wait of
a run whose plan awaits review serve it alike.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from core.errors import CommandTimeout, LoopdeckError, TransitionError
from core.store import ANSWERS_CHANNEL, COMMANDS_CHANNEL, CommandRecord, Notifier, Store, WriteBatch

log = logging.getLogger("loopdeck.commands")
SEND_POLL_S = 0.05  # how often a sender re-reads its command when no NOTIFY wakes it

Handler = Callable[[str, dict[str, Any], str], Awaitable[None]]  # (kind, payload, user)


class CommandChannel:
    def __init__(self, store: Store, notifier: Notifier) -> None:
        self.store = store
        self.notifier = notifier

    async def send(
        self, run_id: str, kind: str, payload: dict[str, Any], user: str, timeout_s: float, driver: str
    ) -> None:
        """Queue a command for the run's driver and wait for its answer; a refusal raises ``TransitionError``."""
        async with self.notifier.interest(ANSWERS_CHANNEL, None) as answered:  # before queuing: it may come at once
            command_id = await self.store.enqueue_command(run_id, kind, payload, user)
            deadline = time.monotonic() + timeout_s
            while True:
                command = await self.store.get_command(command_id)
                if command.state == "applied":
                    return
                if command.state == "refused":
                    raise TransitionError(command.result or f"the {kind} was refused")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CommandTimeout(
                        f"run {run_id} is driven by {driver}, which did not answer within {timeout_s:g}s; the "
                        f"{kind} stays queued (command {command_id}) and is applied when that process reads it"
                    )
                await answered.wait(min(left, SEND_POLL_S))  # (any command's answer: this one's is re-read)

    async def serve(self, run_id: str, handler: Handler, poll_s: float) -> None:
        """Apply the run's queued commands as they come, forever (the caller cancels it)."""
        async with self.notifier.interest(COMMANDS_CHANNEL, run_id) as queued:  # (one queued mid-read is kept)
            while True:
                await self.answer_queued(run_id, handler)
                await queued.wait(poll_s)  # NOTIFY (or a datagram) wakes it at once

    async def answer_queued(self, run_id: str, handler: Handler) -> None:
        try:
            commands = await self.store.queued_commands(run_id)
        except LoopdeckError as exc:
            log.warning("cannot read the commands of run %s: %s", run_id, exc)
            return
        for command in commands:
            await self.answer(command, handler)

    async def answer(self, command: CommandRecord, handler: Handler) -> None:
        """Apply one command and record the answer: applied, or refused and why."""
        state, result = "applied", "ok"
        try:
            await handler(command.kind, command.payload, command.created_by or "unknown")
        except LoopdeckError as exc:
            state, result = "refused", str(exc)
        except Exception as exc:
            log.error("command %s could not be applied: %s: %s", command.id, type(exc).__name__, exc, exc_info=exc)
            state, result = "refused", f"the command could not be applied ({type(exc).__name__}: {exc})"
        await self.store.write(WriteBatch(extras=[self.store.answer_command_extra(command.id, state, result)]))
