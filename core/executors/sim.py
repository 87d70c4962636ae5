"""The simulated agent: seeded latency, tokens and failures. Powers the demo and the tests.

Everything random is drawn from ``Random(f"{seed}:{key}:{attempt}")``, so a
step's attempt behaves the same in every run and after a resume.
"""

from __future__ import annotations

import asyncio
import json
import random

from core.executors.base import AttemptFailed, Result, StepCall, Usage
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
        output = (
            cfg.output
            if cfg.output is not None
            else f"{call.title}: done with input {json.dumps(call.input, sort_keys=True, default=str)}"
        )
        return Result(output, usage)
