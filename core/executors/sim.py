"""The simulated agent: seeded latency, tokens and failures. Powers the demo and the tests.

Everything random is drawn from ``Random(f"{seed}:{key}:{attempt}")``, so a
step's attempt behaves the same in every run and after a resume. A sim agent
with ``tool_calls`` asks for them first, one turn per item (a list is one turn
of parallel calls), through the engine like a model would; its default output
then says what each call answered, so a test can read what "the model" got.
Such an agent spends its ``tokens`` on every model turn (each call, and the
answer after the last), accounted for through ``call.meter`` like a model's.
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

from core.executors.base import AttemptFailed, ChatTurn, Result, StepCall, ToolReply, ToolRequest, Usage
from core.model.plan import SimAgent


class SimExecutor:
    interruptible = True

    def __init__(self, config: SimAgent) -> None:
        self.config = config

    async def execute(self, call: StepCall) -> Result:
        cfg = self.config
        low, high = cfg.latency_bounds()
        delay, fail_roll = low / 1000.0, 1.0  # (no draws to make: seeding a Random is ~2% of a chained step)
        if high > low or cfg.fail_rate > 0:  # the same draws, in the same order, as ever
            rng = random.Random(f"{cfg.seed}:{call.key}:{call.attempt}")
            if high > low:
                delay = rng.uniform(low, high) / 1000.0
            fail_roll = rng.random()
        turns = _Turns(call, Usage(*cfg.tokens), len(call.tools.recorded()) + 1 if call.tools else 1)
        scripted = bool(cfg.script())
        if scripted:
            await turns.admit(turns.first)
        if delay > 0:  # (a zero-latency agent answers at once: benchmarks measure the engine, not a wake-up)
            await asyncio.sleep(delay)
        if scripted:
            turns.spent(turns.first)
        usage = turns.total
        if call.attempt <= cfg.fail_times:
            raise AttemptFailed(
                f"simulated failure (attempt {call.attempt} of the first {cfg.fail_times} that fail)", usage
            )
        if fail_roll < cfg.fail_rate:
            raise AttemptFailed(f"simulated failure (fail_rate {cfg.fail_rate})", usage)
        replies = await self._scripted_calls(call, turns)
        usage = turns.total
        if cfg.output is not None:
            return Result(cfg.output, usage)
        output = f"{call.title}: done with input {json.dumps(call.input, sort_keys=True, default=str)}"
        if replies:
            output += "; tool calls: " + json.dumps([_shown(r) for r in replies], sort_keys=True, default=str)
        return Result(output, usage)

    async def _scripted_calls(self, call: StepCall, turns: _Turns) -> list[ToolReply]:
        script = self.config.script()
        if not script:
            return []
        if call.tools is None:
            raise AttemptFailed("this sim agent scripts tool calls, but no tools were given to it", retryable=False)
        await call.tools.ready()
        replies: list[ToolReply] = []
        recorded = call.tools.recorded()
        for turn, calls in enumerate(script, start=1):
            if turn <= len(recorded):  # answered before a resume: never asked again
                replies.extend(recorded[turn - 1].replies)
                continue
            await turns.take(turn)
            requests = [ToolRequest(c.tool, c.arguments, f"sim-{turn}-{i}") for i, c in enumerate(calls)]
            replies.extend(await call.tools.turn(turn, f"calling {', '.join(c.tool for c in calls)}", requests))
        await turns.take(len(script) + 1)  # the turn that answers
        return replies


class _Turns:
    """The model turns a scripted sim agent takes in one attempt (from ``first``: after a resume, the turns
    recorded are not taken again), each spending the agent's ``tokens`` through the call's meter."""

    def __init__(self, call: StepCall, per_turn: Usage, first: int) -> None:
        self.call, self.per_turn, self.first = call, per_turn, first
        self.taken = 0

    @property
    def total(self) -> Usage:
        n = max(1, self.taken)  # an agent without a script spends its tokens once
        return Usage(self.per_turn.prompt_tokens * n, self.per_turn.completion_tokens * n)

    async def take(self, turn: int) -> None:
        """Model turn ``turn``, unless it is the first, already taken (before the latency)."""
        if turn > self.first:
            await self.admit(turn)
            self.spent(turn)

    async def admit(self, turn: int) -> None:
        if self.call.meter is not None:
            await self.call.meter.admit(turn)

    def spent(self, turn: int) -> None:
        self.taken += 1
        if self.call.meter is not None:
            self.call.meter.spent(ChatTurn(turn, self.per_turn, "sim", "sim", "sim"))


def _shown(reply: ToolReply) -> dict[str, Any]:
    return {"call": reply.call_id, "tool": reply.request.tool, "ok": reply.ok, "content": reply.content}
