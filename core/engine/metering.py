"""Model calls inside an attempt: each admitted by the run's budget, settled as it ends, recorded as a span.

An attempt's first model call runs on the reservation its launch took. Each
further call (the turns of a tool loop) must reserve the agent's estimate
again before it starts, so a loop cannot spend past the budget however many
turns it takes, and parallel loops cannot together either. When the budget
has no room and nothing in flight holds a reservation that could free some,
the budget is spent: the run fails or pauses (``on_budget_exhausted``) and
the call waits; raising the budget lets it go on, in the same attempt.

A call that ends counts its tokens toward the step and the run at once,
durably (so a crash later in the loop loses none of them), and leaves a
``chat`` span, a child of the attempt's, with the GenAI attributes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from core.engine import transitions
from core.engine.budget import Budget
from core.engine.commits import Commits
from core.engine.holdings import Holdings
from core.engine.run_state import RunState, StepState
from core.executors import ChatTurn, Usage
from core.limits import MAX_ATTEMPT_TOKENS
from core.model.plan import LlmAgent, SimAgent
from core.model.pricing import cost_of
from core.model.states import StepStatus
from core.store import WriteBatch


class Metering:
    """The model calls of the run one controller drives."""

    def __init__(
        self,
        run: RunState,
        holdings: Holdings,
        commits: Commits,
        clock: Callable[[], float],
        exhausted: Callable[[Budget, str], None],
    ) -> None:
        self.run, self.holdings, self.commits, self.clock = run, holdings, commits, clock
        self.exhausted = exhausted
        self._room = asyncio.Event()
        self._waiting = 0  # model calls waiting for room

    def meter(self, step: StepState, attempt: int) -> AttemptMeter | None:
        """The meter of an attempt whose agent calls a model (an ``llm`` agent, a sim that scripts tool
        calls); None for the others, which spend once and are settled when they end."""
        agent = self.run.plan.agents[step.agent]
        if isinstance(agent, LlmAgent) or (isinstance(agent, SimAgent) and agent.tool_calls):
            return AttemptMeter(self, step, attempt)
        return None

    def wake(self) -> None:
        """Something changed (a reservation settled, the budget was raised, the run continued): every
        call waiting for room looks again."""
        if self._waiting:  # every launch pumps: nothing to do unless a call waits
            self._room.set()
            self._room = asyncio.Event()

    async def room(self) -> None:
        self._waiting += 1
        try:
            await self._room.wait()
        finally:
            self._waiting -= 1


class AttemptMeter:
    """One attempt's ``executors.base.Meter``."""

    def __init__(self, owner: Metering, step: StepState, attempt: int) -> None:
        self.owner, self.step, self.attempt = owner, step, attempt
        self._launched = True  # the first call runs on the launch's reservation
        self._began = owner.clock()

    async def admit(self, turn: int) -> None:
        owner = self.owner
        if self._launched:
            self._launched = False
        else:
            while not owner.holdings.reserve_turn(self.step):
                lacking = owner.holdings.lacking(self.step.key, self.step.agent)
                if lacking is not None and lacking[0].reserved < 1e-9:  # nothing in flight can free room
                    owner.exhausted(lacking[0], f"{lacking[1]} for its model turn {turn}")
                await owner.room()
        self._began = owner.clock()

    def spent(self, turn: ChatTurn) -> None:
        owner, run, step = self.owner, self.owner.run, self.step
        now, usage = owner.clock(), _countable(turn.usage)
        cost = cost_of(run.plan.agents[step.agent], usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens)
        batch = WriteBatch()
        if step.status == StepStatus.RUNNING and step.attempts == self.attempt:
            owner.holdings.count_turn(step, usage, cost)
            transitions.add_spending(run, step, usage.prompt_tokens, usage.completion_tokens, cost)
            batch.step(run.run_id, step.key, step.status.value, step.attempts, step.row())
            batch.run(run.run_id, run.run_row(now))
        batch.span(
            run.run_id,
            step.key,
            self.attempt,
            step.agent,
            "failed" if turn.error else "succeeded",
            self._began,
            now,
            usage.prompt_tokens,
            usage.completion_tokens,
            turn.error,
            cost_usd=cost,
            kind="chat",
            name=turn.model,
            turn=turn.turn,
            attributes=_attributes(turn, usage, cost),
        )
        owner.commits.emit(batch)
        owner.wake()  # the settled reservation may make room for another call


def _countable(usage: Usage) -> Usage:
    """A model call's usage as loopdeck can count it (what a server reports is not trusted)."""
    ok = all(
        isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= MAX_ATTEMPT_TOKENS
        for n in (usage.prompt_tokens, usage.completion_tokens)
    )
    return usage if ok else Usage(estimated=True)


def _attributes(turn: ChatTurn, usage: Usage, cost: float | None) -> dict[str, Any]:
    """The chat span's GenAI semantic-convention attributes (what was said only if the operator opted in)."""
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": turn.provider,
        "gen_ai.request.model": turn.model,
    }
    if turn.response_model:
        attributes["gen_ai.response.model"] = turn.response_model
    if usage.estimated:
        attributes["loopdeck.tokens_estimated"] = True
    if cost is not None:
        attributes["loopdeck.cost_usd"] = cost
    attributes.update(turn.content or {})  # only when the operator opted in to recording what was said
    return attributes
