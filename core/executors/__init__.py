"""Executors: one per agent kind (``base`` holds the contract every one of them keeps).

base.py     StepCall, Result, Usage, AttemptFailed, the Executor protocol, safe_outcome
verdict.py  what a verification step's outcome means (passed, failed, could not run)
sim.py, shell.py, python.py, llm.py (over chat.py: an OpenAI-compatible chat-completions client)
"""

from __future__ import annotations

from core.executors.base import (
    AttemptFailed,
    ChatTurn,
    ChildRuns,
    Executor,
    ExitStatus,
    Meter,
    RecordedTurn,
    Result,
    StepCall,
    ToolPort,
    ToolReply,
    ToolRequest,
    Usage,
    safe_outcome,
)
from core.model.plan import AgentConfig, LlmAgent, PythonAgent, ShellAgent, SimAgent

__all__ = [
    "AttemptFailed",
    "ChatTurn",
    "ChildRuns",
    "Executor",
    "ExitStatus",
    "Meter",
    "RecordedTurn",
    "Result",
    "StepCall",
    "ToolPort",
    "ToolReply",
    "ToolRequest",
    "Usage",
    "build_executor",
    "safe_outcome",
]


def build_executor(name: str, config: AgentConfig) -> Executor:
    """The executor for an agent config (imports lazily: a plan pays only for the kinds it uses)."""
    if isinstance(config, LlmAgent):
        from core.executors.llm import LlmExecutor

        return LlmExecutor(name, config)
    if isinstance(config, SimAgent):
        from core.executors.sim import SimExecutor

        return SimExecutor(config)
    if isinstance(config, ShellAgent):
        from core.executors.shell import ShellExecutor

        return ShellExecutor(config)
    if isinstance(config, PythonAgent):
        from core.executors.python import PythonExecutor

        return PythonExecutor(config.call)
    raise TypeError(f"no executor for agent kind {type(config).__name__}")
