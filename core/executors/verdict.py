"""Verification steps: a check that passes or fails the work it is given.

Every kind of agent can verify, each in its own terms: a shell command by its
exit code, an LLM by a structured verdict ``{"passed": bool, "reason": str}``,
a Python function by its return value (a bool, or the same verdict mapping),
a simulated agent by its simulated failures (or a verdict given as its output).
``judge`` turns an attempt's outcome into a verdict: a passed check is a
succeeded step whose output is the verdict; a failed check fails the step
without further attempts (the work has not changed) and is not held against
the agent's breaker (the agent did its job). A check that could not run at
all (a timeout, an unreachable server) stays an ordinary, retryable failure.
"""

from __future__ import annotations

from typing import Any

from core.executors.base import AttemptFailed, ExitStatus, Result, Usage

VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"passed": {"type": "boolean"}, "reason": {"type": "string"}},
    "required": ["passed", "reason"],
    "additionalProperties": False,
}


class CheckFailed(AttemptFailed):
    """A verification ran and found the work wanting."""

    def __init__(self, reason: str, usage: Usage | None = None) -> None:
        super().__init__(f"check failed: {reason}", usage, retryable=False, agent_fault=False)
        self.reason = reason


def judge(kind: str, outcome: Result | AttemptFailed) -> Result | AttemptFailed:
    """The verdict of a verification attempt run on an agent of ``kind``."""
    if isinstance(outcome, ExitStatus):
        return CheckFailed(outcome.tail or f"the check exited with code {outcome.code}", outcome.usage)
    if isinstance(outcome, AttemptFailed):
        return outcome
    passed, reason = _verdict(outcome.output)
    if passed is None and kind in ("shell", "sim"):  # judged by finishing: exit code 0, or the simulation's dice
        text = outcome.output.strip() if isinstance(outcome.output, str) else ""
        return Result({"passed": True, "reason": text[-500:] or "exit code 0"}, outcome.usage)
    if passed is None:
        return AttemptFailed(reason, outcome.usage, retryable=kind == "llm")
    if not passed:
        return CheckFailed(reason, outcome.usage)
    return Result({"passed": True, "reason": reason}, outcome.usage)


def _verdict(value: Any) -> tuple[bool | None, str]:
    """``(passed, reason)``, or ``(None, what is wrong)`` when ``value`` is no verdict."""
    if isinstance(value, bool):
        return value, "passed" if value else "the check returned false"
    if isinstance(value, dict) and isinstance(value.get("passed"), bool):
        reason = value.get("reason")
        return value["passed"], reason if isinstance(reason, str) and reason else (
            "passed" if value["passed"] else "no reason given"
        )
    shown = repr(value)[:200]
    return None, f'a verifier answers true/false or {{"passed": bool, "reason": str}}, not {shown}'
