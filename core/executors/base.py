"""The executor contract: what an attempt is given, what it returns, and how it fails.

An executor gets a ``StepCall`` (the step, its resolved input, its context,
a callback for streamed output) and returns a ``Result`` (output and
``Usage``) or raises ``AttemptFailed`` (retryable or not, with what it spent
anyway). Executors never touch the store or the bus: the controller applies
what they return, after ``safe_outcome`` made it safe to store (secrets
redacted, strict JSON, usage a countable number of tokens). ``interruptible``
says whether cancelling the coroutine really stops the work.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from core.limits import MAX_ATTEMPT_TOKENS
from core.model.tools import ToolSpec
from core.redaction import Redactor
from core.values import ValueProblem, to_json_value


@dataclass(frozen=True, slots=True)
class ToolRequest:
    """One call a model asks for in a turn: a tool and its arguments (the model's id, to answer it)."""

    tool: str
    arguments: Any
    model_call_id: str | None = None


@dataclass(frozen=True, slots=True)
class ToolReply:
    """What the model is told about one call: the tool's result, or why there is none."""

    call_id: str  # loopdeck's own
    request: ToolRequest
    ok: bool
    content: Any  # the result (JSON) when ok, else a sentence: the error, the refusal and its reason

    def text(self) -> str:
        """The content as the model reads it (JSON for a result, the sentence otherwise)."""
        if self.ok:
            return self.content if isinstance(self.content, str) else json.dumps(self.content, ensure_ascii=False)
        return str(self.content)


@dataclass(frozen=True, slots=True)
class RecordedTurn:
    """A turn of the conversation that already happened (rebuilt from the records after a resume)."""

    text: str | None
    replies: list[ToolReply]


class ToolPort(Protocol):
    """How an executor's tool loop reaches tools: every call recorded, gated and run by the engine."""

    async def ready(self) -> None:
        """Start what the tools need (MCP servers); raises ``AttemptFailed`` naming what cannot start."""

    @property
    def specs(self) -> list[ToolSpec]: ...

    def recorded(self) -> list[RecordedTurn]: ...

    async def turn(self, turn: int, text: str | None, requests: list[ToolRequest]) -> list[ToolReply]: ...


@dataclass(frozen=True, slots=True)
class ChatTurn:
    """One model call of an attempt, as it ended: what the budget settles and the chat span records."""

    turn: int  # 1-based, within the attempt's conversation
    usage: Usage
    model: str  # the model asked for
    provider: str  # gen_ai.provider.name: "openai" for the OpenAI protocol, "sim" for a simulated agent
    response_model: str | None = None  # the model that answered, when the server says
    error: str | None = None  # the call failed (and the attempt with it)
    # what was said (gen_ai.input.messages / gen_ai.output.messages, as JSON), only when the operator opted in
    # (LOOPDECK_OTEL_CAPTURE_CONTENT=1): redacted of the agent's secrets, each cut to MAX_TEXT characters
    content: dict[str, str] | None = None


class Meter(Protocol):
    """How an executor accounts for each model call: the budget reserves and settles per call, so a tool
    loop cannot take a run past its budget, and each call becomes a chat span."""

    async def admit(self, turn: int) -> None:
        """A model call is about to start: wait until the run's budget has room for it (the attempt's
        first call was reserved at launch). An exhausted budget pauses or ends the run (ending it cancels
        the attempt); raising the budget lets the call go on."""

    def spent(self, turn: ChatTurn) -> None:
        """The model call ended: its tokens count now (step, run, agent) and its span is recorded."""


@dataclass(frozen=True, slots=True)
class StepCall:
    run_id: str
    key: str
    title: str
    type: str
    agent: str
    attempt: int
    input: Any
    context: list[dict[str, Any]] = field(default_factory=list)
    timeout_s: float | None = None
    # Partial output as it arrives (streaming agents call it with each new piece of text);
    # the controller coalesces the pieces into at most ~10 events per second.
    on_partial: Callable[[str], None] | None = field(default=None, compare=False)
    # The agent's tools (None: it has none): each call the model asks for goes through here.
    tools: ToolPort | None = field(default=None, compare=False)
    # Model calls are accounted for one by one (the llm agent, and a sim agent with scripted tool calls).
    meter: Meter | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated: bool = False  # the agent reported no usage; these are estimates from the text
    cached_tokens: int = 0  # of the prompt tokens, those the server read from its cache (priced apart)

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Result:
    output: Any
    usage: Usage = Usage()
    cost_usd: float | None = None  # what it cost, when the executor knows it itself (a child run); else priced


class AttemptFailed(Exception):
    """An attempt failed; ``usage`` is what it spent anyway, ``retryable`` whether trying again can help.

    ``retry_after_s`` is the wait the target asked for (HTTP ``Retry-After``); ``agent_fault``
    False means the agent worked and the work itself was found wanting (a failed check), which
    is not held against the agent's circuit breaker.
    """

    def __init__(
        self,
        message: str,
        usage: Usage | None = None,
        retryable: bool = True,
        *,
        retry_after_s: float | None = None,
        agent_fault: bool = True,
        cost_usd: float | None = None,
    ) -> None:
        super().__init__(message)
        self.usage = usage or Usage()
        self.cost_usd = cost_usd  # as Result's
        self.retryable = retryable
        self.retry_after_s = retry_after_s
        self.agent_fault = agent_fault


class ChildRuns(Protocol):
    """How a sub_agent step's attempt runs its plan: as a child run of the step's run (the orchestrator's)."""

    async def run_child(self, parent: str, step: str, plan: dict[str, Any]) -> Result:
        """Run (or, after a crash, go on with) the step's child run to its end: its final output, tokens and
        cost; ``AttemptFailed`` when it did not succeed."""
        ...

    async def cancel_child(self, parent: str, step: str) -> bool:
        """Cancel the step's unfinished child run (its step timed out, or its run ended); whether there was one."""
        ...


async def until_done(fut: asyncio.Future[Any]) -> bool:
    """Wait for ``fut`` to end even if this task is canceled meanwhile, once or again: a canceled executor
    finishes unwinding (a child run ended or left) before its attempt ends. Returns whether this task was
    canceled meanwhile: the caller raises that once it is done."""
    canceled = False
    while not fut.done():
        try:
            await asyncio.wait({fut})
        except asyncio.CancelledError:
            canceled = True
    return canceled


class Executor(Protocol):
    @property
    def interruptible(self) -> bool: ...

    async def execute(self, call: StepCall) -> Result: ...


class ExitStatus(AttemptFailed):
    """A command ran and exited non-zero (raised by the shell executor)."""

    def __init__(self, code: int, tail: str, usage: Usage | None = None) -> None:
        super().__init__(f"exit code {code}" + (f": {tail}" if tail else ""), usage)
        self.code = code
        self.tail = tail


def safe_outcome(outcome: Result | AttemptFailed, redactor: Redactor) -> Result | AttemptFailed:
    """An attempt's outcome as it may be stored and shown: secrets redacted, the output strict JSON,
    the usage a number of tokens loopdeck can count.

    An output too deep or too large to store, or usage that is not a whole number
    of tokens from 0 to ``MAX_ATTEMPT_TOKENS``, fails the attempt (retrying returns the same).
    """
    bad_usage = _usage_problem(outcome.usage)
    if isinstance(outcome, AttemptFailed):
        outcome.args = (redactor.text(str(outcome)) + (f" ({bad_usage})" if bad_usage else ""),)
        if bad_usage:
            outcome.usage = Usage()
        return outcome
    if bad_usage:
        return AttemptFailed(f"the agent's answer cannot be counted: {bad_usage}", retryable=False)
    try:
        output = to_json_value(outcome.output)
    except ValueProblem as exc:
        return AttemptFailed(f"the agent's output cannot be stored: {exc.message}", outcome.usage, retryable=False)
    return Result(redactor.value(output), outcome.usage, outcome.cost_usd)


def _usage_problem(usage: Usage) -> str | None:
    for name in ("prompt_tokens", "completion_tokens"):
        value = getattr(usage, name)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_ATTEMPT_TOKENS:
            return f"it reported {name} {value!r}, not a whole number from 0 to {MAX_ATTEMPT_TOKENS:,}"
    return None
