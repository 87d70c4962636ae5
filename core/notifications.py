"""Notifications: people told, through Apprise, when a run needs them or ends.

What is sent: ``gate_waiting`` (a step or a tool call waits for approval,
with the exact command that answers it), ``approval_timed_out``,
``run_ended``, ``budget_paused`` (a run waits for a larger budget) and
``breaker_opened``; a target may ask
for some of them only. Targets are the plan's ``policy.notify`` (each URL
named by an environment variable, ``${NAME}``: the plan is stored, a URL may
hold a secret) and, for every run, the URLs in ``LOOPDECK_NOTIFY``.

Sending happens in a background task of the driving process, retried with
backoff, and never blocks or fails the run; each delivery and each failure
is an event (``notification_sent``, ``notification_failed``) naming the
target by its scheme and host only. A URL never reaches the store, an
event, a log line or the screen (Apprise's own logging is kept quiet for the
same reason). When the process stops it gives the queue a few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from core.config import from_settings
from core.lazy import LazyModule
from core.model.events import EventType
from core.redaction import url_origin
from core.store import WriteBatch

if TYPE_CHECKING:
    from core.model.policy import Policy

policy_model = LazyModule("core.model.policy")  # (pydantic: not needed by a command that sends nothing)

E = EventType
log = logging.getLogger("loopdeck.notifications")
ENV_VAR = "LOOPDECK_NOTIFY"
ATTEMPTS = 3
CLOSE_WAIT_S = 5.0


@dataclass(frozen=True)
class Target:
    url: str  # the secret one: only ever handed to Apprise
    shown: str  # scheme and host: what events and logs say
    events: frozenset[str]


@dataclass(frozen=True)
class Message:
    kind: str  # one of NOTIFY_EVENTS
    title: str
    body: str


def _every_run() -> list[str]:
    """The URLs told about every run: none, without loading the settings, when nothing could name one."""
    return from_settings("notify", [], lambda settings: settings.notify)


def targets(
    policy: Policy, environ: Mapping[str, str] = os.environ, every_run: list[str] | None = None
) -> tuple[list[Target], list[str]]:
    """The run's targets, and what is wrong with any (a variable that is not set): never a URL.

    ``every_run``: the URLs told about every run (``LOOPDECK_NOTIFY``, else the configuration's ``notify``);
    read from the settings when not given. They live in this process only: never in the store."""
    found, problems = [], []
    for entry in policy.notify:
        url = environ.get(entry.variable, "").strip()
        if url:
            found.append(Target(url, shown(url), frozenset(entry.events)))
        else:
            problems.append(f"policy.notify names ${{{entry.variable}}}, which is not set: nothing is sent there")
    if every_run is None:
        every_run = _every_run()
    for url in every_run:
        found.append(Target(url, shown(url), frozenset(policy_model.NOTIFY_EVENTS)))
    return found, problems


def shown(url: str) -> str:
    """A target as events and logs may name it: its scheme and host (never a user, password, path or token)."""
    return url_origin(url) if urlsplit(url).scheme else "a notification URL"


def message_for(run_id: str, goal: str, type_: str, key: str | None, p: dict[str, Any]) -> Message | None:
    """What an event tells people, if it is one they are told about."""
    about = f"run {run_id}" + (f" ({goal})" if goal else "")
    if type_ == E.STEP_WAITING:
        body = (
            f"{about}\napprove: loopdeck approve {run_id} {key}\nreject:  loopdeck reject {run_id} {key} --reason TEXT"
        )
        return Message("gate_waiting", f'loopdeck: step "{key}" waits for approval', body)
    if type_ == E.TOOL_CALL_WAITING:
        call = p.get("call")
        body = (
            f"{about}\ntool {p.get('tool')} (step {key})\n"
            f"approve: loopdeck approve-call {run_id} {call}\n"
            f"refuse:  loopdeck approve-call {run_id} {call} --reject --reason TEXT"
        )
        return Message("gate_waiting", f'loopdeck: tool call "{call}" waits for approval', body)
    if type_ == E.APPROVAL_TIMED_OUT:
        what = f"tool call {p.get('call')}" if p.get("gate") == "call" else f"step {key}"
        body = f"{about}\nnobody answered by {p.get('deadline')}: {p.get('action')}"
        return Message("approval_timed_out", f"loopdeck: the approval of {what} timed out", body)
    if type_ == E.RUN_ENDED:
        summary = p.get("summary") or p.get("reason") or ""
        return Message("run_ended", f"loopdeck: run {run_id} {p.get('status')}", f"{about}\n{summary}".strip())
    if type_ == E.BUDGET_EXHAUSTED:
        return Message(
            "budget_paused", f"loopdeck: run {run_id} waits for a larger budget", f"{about}\n{p.get('reason')}"
        )
    if type_ == E.BREAKER_CHANGED and p.get("to") == "open":
        body = f"{about}\n{p.get('agent')}: {p.get('reason') or ''}".strip()
        return Message("breaker_opened", f"loopdeck: circuit breaker of {p.get('agent')} opened", body)
    return None


class Notifications:
    """The notifications of the runs this process drives: one sender per target, in order, in the background."""

    backoff_s = 1.0  # before the second attempt; doubled before each next (cut short when the process stops)

    def __init__(self, write: Callable[[WriteBatch], Awaitable[Any]], clock: Callable[[], float] = time.time) -> None:
        quiet = logging.getLogger("apprise")  # its lines may carry a URL
        quiet.addHandler(logging.NullHandler())
        quiet.propagate = False
        self.write, self.clock = write, clock
        self._queues: dict[str, asyncio.Queue[tuple[str, Message]]] = {}  # by target URL
        self._senders: list[asyncio.Task[None]] = []
        self._closing = asyncio.Event()

    def observer(self, run_id: str, goal: str, policy: Policy) -> Callable[[WriteBatch], None] | None:
        """What a run's controller calls with each durable batch; None when the run has no targets."""
        found, problems = targets(policy)
        for problem in problems:
            log.warning("run %s: %s", run_id, problem)
        if not found:
            return None

        def observe(batch: WriteBatch) -> None:
            for row, payload in zip(batch.events, batch.payloads, strict=True):
                message = message_for(run_id, goal, row["type"], row["step_key"], payload)
                if message is None or row["run_id"] != run_id:
                    continue
                for target in found:
                    if message.kind in target.events:
                        self._queue(target).put_nowait((run_id, message))

        return observe

    def _queue(self, target: Target) -> asyncio.Queue[tuple[str, Message]]:
        queue = self._queues.get(target.url)
        if queue is None:
            queue = self._queues[target.url] = asyncio.Queue()
            self._senders.append(asyncio.get_running_loop().create_task(self._sender(target, queue)))
        return queue

    async def aclose(self) -> None:
        """Send what is queued (retries no longer wait), for at most ``CLOSE_WAIT_S``, then stop."""
        self._closing.set()
        if not self._senders:
            return
        waits = [asyncio.ensure_future(q.join()) for q in self._queues.values()]
        await asyncio.wait(waits, timeout=CLOSE_WAIT_S)
        for task in [*waits, *self._senders]:
            task.cancel()
        await asyncio.gather(*waits, *self._senders, return_exceptions=True)
        left = sum(q.qsize() for q in self._queues.values())
        if left:
            log.warning("%d notifications were not sent before loopdeck stopped", left)
        self._senders.clear()

    async def _sender(self, target: Target, queue: asyncio.Queue[tuple[str, Message]]) -> None:
        while True:
            run_id, message = await queue.get()
            try:
                await self._deliver(run_id, target, message)
            except Exception:  # a bug here must not stop the notifications after it
                log.exception("a notification could not be sent")
            finally:
                queue.task_done()

    async def _deliver(self, run_id: str, target: Target, message: Message) -> None:
        error, attempt = "", 0
        for attempt in range(1, ATTEMPTS + 1):
            error = await send(target, message)
            if not error:
                break
            if attempt < ATTEMPTS:
                with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), self.backoff_s * 2 ** (attempt - 1))
        payload: dict[str, Any] = {"event": message.kind, "target": target.shown, "attempts": attempt}
        if error:
            payload["error"] = error
            log.warning("run %s: %s notification to %s failed: %s", run_id, message.kind, target.shown, error)
        batch = WriteBatch()
        kind = E.NOTIFICATION_FAILED if error else E.NOTIFICATION_SENT
        batch.event(run_id, kind, None, payload, self.clock())
        await self.write(batch)


async def send(target: Target, message: Message) -> str:
    """One attempt through Apprise; the empty string when it went, else why not (never the URL)."""
    import apprise  # ~0.1 s: only when a run has somewhere to send to

    sender = apprise.Apprise()
    if not sender.add(target.url):
        return f"not a URL Apprise can send to ({target.shown})"
    try:
        sent = await sender.async_notify(title=message.title, body=message.body)
    except Exception as exc:
        return f"{type(exc).__name__}"
    return "" if sent else f"{target.shown} did not accept it"
