"""Executors: one per agent kind. Given a step call, return a ``Result`` or raise.

Executors never touch the store or the bus; the controller applies what they
return. ``interruptible`` says whether cancelling the coroutine really stops
the work: a sync Python function in a thread cannot be stopped, so on timeout
the controller lets it run out and records its late result as stale.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from ..plan import PythonAgent, ShellAgent, SimAgent


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


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Result:
    output: Any
    usage: Usage = Usage()


class AttemptFailed(Exception):
    """An attempt failed; ``usage`` is what it spent anyway, ``retryable`` whether trying again can help."""

    def __init__(self, message: str, usage: Usage | None = None, retryable: bool = True) -> None:
        super().__init__(message)
        self.usage = usage or Usage()
        self.retryable = retryable


class Executor(Protocol):
    interruptible: bool

    async def execute(self, call: StepCall) -> Result: ...


def build_executor(config: SimAgent | ShellAgent | PythonAgent) -> Executor:
    """The executor for an agent config (imports lazily: a plan pays only for the kinds it uses)."""
    if isinstance(config, SimAgent):
        from .sim import SimExecutor

        return SimExecutor(config)
    if isinstance(config, ShellAgent):
        from .shell import ShellExecutor

        return ShellExecutor(config)
    if isinstance(config, PythonAgent):
        from .python import PythonExecutor

        return PythonExecutor(config)
    raise TypeError(f"no executor for agent kind {type(config).__name__}")
