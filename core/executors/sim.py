"""The simulated agent: seeded latency, tokens and failures. Powers the demo and the tests.

Everything random is drawn from ``Random(f"{seed}:{key}:{attempt}")``, so a
step's attempt behaves the same in every run and after a resume. A sim agent
with ``tool_calls`` asks for them first, one turn per item (a list is one turn
of parallel calls), through the engine like a model would; its default output
then says what each call answered, so a test can read what "the model" got.
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

from core.executors.base import AttemptFailed, Result, StepCall, ToolReply, ToolRequest, Usage
from core.model.plan import SimAgent


class SimExecutor:
    interruptible = True

    def __init__(self, config: SimAgent) -> None:
        self.config = config

    async def execute(self, call: StepCall) -> Result:
        cfg = self.config
        rng = random.Random(f"{cfg.seed}:{call.key}:{call.attempt}")
        low, high = cfg.latency_bounds()
        delay = rng.uniform(low, high) / 1000.0 if high > low else low / 1000.0
        fail_roll = rng.random()
        await asyncio.sleep(delay)
        usage = Usage(*cfg.tokens)
        if call.attempt <= cfg.fail_times:
            raise AttemptFailed(
                f"simulated failure (attempt {call.attempt} of the first {cfg.fail_times} that fail)", usage
            )
        if fail_roll < cfg.fail_rate:
            raise AttemptFailed(f"simulated failure (fail_rate {cfg.fail_rate})", usage)
        replies = await self._scripted_calls(call)
        if cfg.output is not None:
            return Result(cfg.output, usage)
        output = f"{call.title}: done with input {json.dumps(call.input, sort_keys=True, default=str)}"
        if replies:
            output += "; tool calls: " + json.dumps([_shown(r) for r in replies], sort_keys=True, default=str)
        return Result(output, usage)

    async def _scripted_calls(self, call: StepCall) -> list[ToolReply]:
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
            requests = [ToolRequest(c.tool, c.arguments, f"sim-{turn}-{i}") for i, c in enumerate(calls)]
            replies.extend(await call.tools.turn(turn, f"calling {', '.join(c.tool for c in calls)}", requests))
        return replies


def _shown(reply: ToolReply) -> dict[str, Any]:
    return {"call": reply.call_id, "tool": reply.request.tool, "ok": reply.ok, "content": reply.content}
