"""Tool calls inside an attempt: each recorded, gated by the approval rules, run, and answered.

An executor's tool loop hands each turn's calls to its ``ToolSession`` (the
``ToolPort`` of ``executors.base``). The session records every call before
anything happens to it (``requested``), decides by the plan's approval rules
(allow, ask, deny), and commits that; a call that asks waits for the
operator's ``DecideCall`` (live, from another terminal, or decided while
nobody drove the run); an allowed or approved call is marked ``running``
(durably, before the tool is touched), run, and its result committed before
the model hears of it. Parallel calls of one turn are gated and run
concurrently, each by its own id, so answering one never answers another.

A call found already recorded (the same step, attempt, turn and position) is
not recorded or run again: a succeeded call's result is what the model gets.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from core.engine import transitions
from core.engine.breaker import BreakerBoard, BreakerChange
from core.engine.call_state import CallState
from core.engine.commits import Commits
from core.engine.run_state import RunState, StepState
from core.executors import AttemptFailed, RecordedTurn, ToolReply, ToolRequest
from core.model.events import EventType, iso
from core.model.plan import offers
from core.model.tools import CallStatus, Facts, RuleDecision, ToolSpec, approval_timeout, call_id, decide_call
from core.store import Store, WriteBatch
from core.tools import ServerFailure, Toolbox, ToolError
from core.tools.builtin import BUILTIN

C = CallStatus
E = EventType
T = TypeVar("T")


class ToolCalls:
    """The tool calls of the run one controller drives."""

    def __init__(
        self,
        run: RunState,
        commits: Commits,
        clock: Callable[[], float],
        toolbox: Toolbox,
        board: BreakerBoard,
    ) -> None:
        self.run, self.commits, self.clock, self.toolbox = run, commits, clock, toolbox
        self.board = board
        self._targets: dict[str, str] = {}  # MCP server -> its breaker's target, configured once (as Routing does)
        for name, cfg in run.plan.mcp_servers.items():
            self._targets[name] = cfg.breaker_target(name)
            board.configure(self._targets[name], cfg.breaker_failures, cfg.breaker_cooldown_s)
        self._answers: dict[str, asyncio.Event] = {}
        self.gated: Callable[[], None] = lambda: None  # told when calls started to wait (their deadlines)
        self.builtin: Callable[[StepState, CallState], Awaitable[Any]] | None = None  # delegate, propose_steps

    async def guarded(self, server: str, work: Callable[[], Awaitable[T]]) -> T:
        """``work`` against an MCP server, through the server's circuit breaker: refused at once while it is
        open; the server failing (not a tool answering with an error) counts against it."""
        breaker = self.board.get(self._targets[server])
        batch = WriteBatch()
        self._moved(server, breaker.poll(), batch)
        if not breaker.can_admit():
            if batch.size:
                await self.commit(batch)
            raise ServerFailure(
                f'MCP server "{server}" is failing: its circuit breaker is open '
                f"({breaker.failures} failures in a row); it is tried again in {breaker.retry_in():.0f}s"
            )
        probe = breaker.admit()
        outcome: bool | None = None
        try:
            result = await work()
            outcome = True
            return result
        except ServerFailure:
            outcome = False
            raise
        except ToolError:
            outcome = True  # the server answered: the tool said no
            raise
        finally:
            if outcome is None:  # canceled: no outcome to hold for or against it
                if probe:
                    breaker.release_probe()
            else:
                self._moved(server, breaker.record(outcome, probe), batch)
                if batch.size:
                    await self.commit(batch)

    def _moved(self, server: str, change: BreakerChange | None, batch: WriteBatch) -> None:
        if change is not None:
            batch.extras.append(Store.save_breaker_extra(self.board.get(change.target).row()))
            batch.event(self.run.run_id, E.BREAKER_CHANGED, None, change.payload(f"mcp:{server}"), self.clock())

    def session(self, step: StepState, attempt: int) -> ToolSession | None:
        """The port an attempt's executor calls tools through; None for an agent without tools."""
        tools = getattr(self.run.plan.agents[step.agent], "tools", None)
        return ToolSession(self, step, attempt, list(tools)) if tools else None

    def answered(self, call_ids: list[str]) -> None:
        """An operator's decision on these calls is durable: their attempts go on."""
        for cid in call_ids:
            event = self._answers.get(cid)
            if event is not None:
                event.set()

    async def commit(self, batch: WriteBatch) -> None:
        await asyncio.shield(self.commits.emit(batch))

    async def wait_for_answer(self, call: CallState) -> None:
        event = self._answers.setdefault(call.id, asyncio.Event())
        try:
            await event.wait()
        finally:
            if self._answers.get(call.id) is event:
                del self._answers[call.id]


class ToolSession:
    """One attempt's way to its agent's tools (``executors.base.ToolPort``)."""

    def __init__(self, owner: ToolCalls, step: StepState, attempt: int, names: list[str]) -> None:
        self.owner, self.step, self.attempt, self.names = owner, step, attempt, names

    async def ready(self) -> None:
        """Start the MCP servers this agent's tools need, each through its breaker."""
        toolbox = self.owner.toolbox
        for server in sorted({n.split(":", 1)[0] for n in self.names if ":" in n}):
            try:
                await self.owner.guarded(server, functools.partial(toolbox.start, server))
            except ToolError as exc:
                raise AttemptFailed(str(exc)) from None

    @property
    def specs(self) -> list[ToolSpec]:
        return self.owner.toolbox.specs(self.names)

    def _calls(self) -> list[CallState]:
        """The calls this attempt holds: its own, and those an interrupted attempt before it carried over."""
        return sorted(
            (c for c in self.owner.run.calls.values() if c.step == self.step.key and c.attempt == self.attempt),
            key=lambda c: (c.turn, c.idx),
        )

    def recorded(self) -> list[RecordedTurn]:
        """Turns already finished (every call final), in order: the conversation so far, after a resume."""
        calls = self._calls()
        turns: list[RecordedTurn] = []
        for number in sorted({c.turn for c in calls}):
            in_turn = [c for c in calls if c.turn == number]
            if not all(c.status.final for c in in_turn):
                break
            turns.append(RecordedTurn(in_turn[0].text, [reply(c) for c in in_turn]))
        return turns

    async def turn(self, turn: int, text: str | None, requests: list[ToolRequest]) -> list[ToolReply]:
        """Record, gate and run this turn's calls; their replies in the order asked."""
        run, now, batch = self.owner.run, self.owner.clock(), WriteBatch()
        calls = []
        held = {(c.turn, c.idx): c for c in self._calls()}
        for index, request in enumerate(requests):
            cid = call_id(self.step.key, self.attempt, turn, index)
            call = held.get((turn, index))
            if call is None:
                call = CallState(
                    cid,
                    self.step.key,
                    self.attempt,
                    turn,
                    index,
                    request.tool,
                    None,
                    request.model_call_id,
                    text,
                    request.arguments,
                    C.REQUESTED,
                    created_at=now,
                    updated_at=now,
                )
                transitions.request_call(run, call, batch, now)
                self._gate(call, batch, now)
            calls.append(call)
        if batch.size:
            await self.owner.commit(batch)
            self.owner.gated()
        return list(await asyncio.gather(*(self._settle(call) for call in calls)))

    def _gate(self, call: CallState, batch: WriteBatch, now: float) -> None:
        """Allow (it stays requested and runs), ask the operator, or deny with the reason the model gets."""
        decision, spec = self._decision(call)
        run = self.owner.run
        payload: dict[str, Any] = {"rule": decision.rule, "reason": decision.reason}
        if decision.action == "ask":
            payload["arguments"] = call.arguments
            if spec is not None:  # what the approval dialog shows with the call
                payload.update(server=spec.server, annotations=spec.annotations(), schema=spec.input_schema)
            policy = run.policy
            due = approval_timeout(None, None, decision, policy.approval_timeout_s, policy.on_approval_timeout)
            deadline = None if due is None else now + due[0]
            if deadline is not None:
                payload["deadline"] = iso(deadline)
            transitions.move_call(run, call, "ask", batch, now, payload, rule=decision.rule, deadline=deadline)
        elif decision.action == "deny":
            why = decision.reason or "not allowed"
            transitions.move_call(run, call, "deny", batch, now, payload, rule=decision.rule, reason=why)
        else:
            call.rule = decision.rule

    def _decision(self, call: CallState) -> tuple[RuleDecision, ToolSpec | None]:
        if not offers(self.names, call.tool):
            return RuleDecision("deny", "not offered", f'"{call.tool}" is not one of this agent\'s tools'), None
        toolbox = self.owner.toolbox
        try:
            spec = toolbox.spec(call.tool)
            toolbox.check(call.tool, call.arguments)
        except ToolError as exc:
            return RuleDecision("deny", "arguments checked", str(exc)), None
        run = self.owner.run
        arguments = call.arguments if isinstance(call.arguments, dict) else {}
        facts = Facts(
            self.step.key,
            self.step.spec.type,
            self.step.agent,
            call.tool,
            spec.server,
            spec.destructive,
            spec.read_only,
            arguments,
        )
        return decide_call(run.plan.approval_rules, facts, run.policy.default_tool_approval), spec

    async def _settle(self, call: CallState) -> ToolReply:
        """Wait for the operator if asked, run the call if allowed, until its answer is final."""
        while not call.status.final:
            if call.status == C.INTERRUPTED and self._safe_to_repeat(call):
                batch = WriteBatch()
                why = "safe to repeat: the tool is read-only or idempotent"
                transitions.move_call(
                    self.owner.run,
                    call,
                    "approve",
                    batch,
                    self.owner.clock(),
                    {"user": "loopdeck", "reason": why},
                    decided_by="loopdeck",
                    reason=why,
                )
                await self.owner.commit(batch)
            elif call.status.waiting:
                await self.owner.wait_for_answer(call)
            elif call.status in (C.REQUESTED, C.APPROVED):
                await self._run(call)
            else:  # running here means another attempt of this process runs it: never twice
                raise RuntimeError(f'tool call "{call.id}" is {call.status.value} in an attempt that did not start it')
        return reply(call)

    def _safe_to_repeat(self, call: CallState) -> bool:
        try:
            return self.owner.toolbox.spec(call.tool).safe_to_repeat
        except ToolError:
            return False

    async def _run(self, call: CallState) -> None:
        run, owner = self.owner.run, self.owner
        batch = WriteBatch()
        transitions.move_call(run, call, "start", batch, owner.clock(), {"arguments": call.arguments})
        await owner.commit(batch)  # durable before the tool is touched: a crash now leaves it interrupted
        try:
            if call.tool in BUILTIN:
                if owner.builtin is None:
                    raise ToolError(f'"{call.tool}" needs the run\'s controller')
                result: Any = await owner.builtin(self.step, call)
            elif ":" in call.tool:
                server = call.tool.split(":", 1)[0]
                result = await owner.guarded(server, lambda: owner.toolbox.invoke(call.tool, call.arguments))
            else:
                result = await owner.toolbox.invoke(call.tool, call.arguments)
        except ToolError as exc:
            batch = WriteBatch()
            transitions.move_call(run, call, "fail", batch, owner.clock(), {"error": str(exc)}, error=str(exc))
        else:
            batch = WriteBatch()
            transitions.move_call(run, call, "succeed", batch, owner.clock(), {"result": result}, result=result)
        await owner.commit(batch)


def reply(call: CallState) -> ToolReply:
    """What the model is told about a final call."""
    request = ToolRequest(call.tool, call.arguments, call.model_call_id)
    if call.status == C.SUCCEEDED:
        return ToolReply(call.id, request, True, call.result)
    if call.status == C.FAILED:
        return ToolReply(call.id, request, False, f"the tool failed: {call.error}")
    if call.status == C.REJECTED:
        why = f": {call.reason}" if call.reason else " (no reason given)"
        return ToolReply(call.id, request, False, f"the operator {call.decided_by} refused this call{why}")
    return ToolReply(call.id, request, False, f"this call is not allowed: {call.reason}")
