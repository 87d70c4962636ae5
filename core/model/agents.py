"""Agents: what a plan's ``agents`` may be (a simulated agent, a shell command, a Python function, an
OpenAI-compatible model), each with its limits, breaker, price and tools; checked when the plan is.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from core.limits import (
    MAX_AGENTS,
    MAX_ATTEMPT_TOKENS,
    MAX_ATTEMPTS,
    MAX_CONCURRENCY,
    MAX_INT,
    MAX_SECONDS,
    MAX_THRESHOLD,
)
from core.model.policy import StrictModel as _Model
from core.model.pricing import Price

CALL_PATTERN = r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"  # module:function
TOOL_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}(:([A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}|\*))?$"  # SKILL, SERVER:TOOL
MAX_TURNS = 100
ToolName = Annotated[str, Field(pattern=TOOL_PATTERN)]
AttemptTokens = Annotated[int, Field(ge=0, le=MAX_ATTEMPT_TOKENS)]
Millis = Annotated[float, Field(ge=0, le=MAX_SECONDS * 1000)]


class BreakerConfig(_Model):
    failure_threshold: int = Field(5, ge=1, le=MAX_THRESHOLD, description="consecutive failures that open the breaker")
    cooldown_s: float = Field(60.0, ge=0, le=MAX_SECONDS, description="seconds open before one probe is let through")


class _AgentBase(_Model):
    max_concurrency: int | None = Field(
        None, ge=1, le=MAX_CONCURRENCY, description="steps of this agent running at once"
    )
    alternatives: list[str] = Field(
        default_factory=list, max_length=MAX_AGENTS, description="agents to route to when this one's breaker is open"
    )
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    reserve_tokens: AttemptTokens = Field(
        0, description="tokens reserved against the budget before each attempt and each further model turn"
    )
    price: Price | None = Field(
        None, description="dollars per million tokens (wins over genai-prices' data; for self-hosted models)"
    )

    def token_estimate(self) -> int:
        """Tokens an attempt may spend, reserved against the run's budget before it starts."""
        return self.reserve_tokens

    def breaker_target(self, name: str) -> str:
        """What the agent ``name`` calls, as its circuit breaker knows it: agents calling one target share it.

        ``llm`` and ``python`` agents name their target (endpoint and model,
        callable). The others (simulated agents, command runners) are told apart
        by kind, name and a digest of what they do, but not by their limits or
        breaker settings: the same name in another plan with another setup is
        another target.
        """
        what = self.model_dump_json(exclude={"max_concurrency", "alternatives", "breaker", "reserve_tokens", "price"})
        return f"{self.kind} {name} #{hashlib.sha256(what.encode()).hexdigest()[:12]}"  # type: ignore[attr-defined]


class ScriptedCall(_Model):
    """A tool call a sim agent makes before it answers."""

    tool: ToolName
    arguments: dict[str, Any] = Field(default_factory=dict)


class _ToolUser(_Model):
    """An agent that may call tools (``llm``, and ``sim`` by script)."""

    tools: list[ToolName] = Field(default_factory=list, description="SKILL, SERVER:TOOL or SERVER:*")
    max_turns: int = Field(10, ge=1, le=MAX_TURNS, description="model turns in one attempt's tool loop")


class SimAgent(_AgentBase, _ToolUser):
    """A seeded simulated agent: latency, tokens and failures, deterministic per (seed, step, attempt)."""

    kind: Literal["sim"] = "sim"
    latency_ms: Millis | tuple[Millis, Millis] = Field(100, description="a number or [min, max]")
    tokens: tuple[AttemptTokens, AttemptTokens] = Field(
        (0, 0), description="[prompt, completion] per attempt (per model turn, with tool_calls)"
    )
    fail_times: int = Field(0, ge=0, le=MAX_ATTEMPTS, description="fail the first N attempts of each step")
    fail_rate: float = Field(0.0, ge=0, le=1)
    output: Any = Field(None, description="output to return; default: a short text with the resolved input")
    seed: int = Field(0, ge=-MAX_INT, le=MAX_INT)
    tool_calls: list[ScriptedCall | list[ScriptedCall]] = Field(
        default_factory=list, description="tool calls before the answer; a list is one turn of parallel calls"
    )

    @model_validator(mode="after")
    def _latency_range(self) -> SimAgent:
        low, high = self.latency_bounds()
        if low < 0 or high < low:
            raise ValueError("latency_ms must be >= 0, or [min, max] with 0 <= min <= max")
        for turn in self.script():
            for call in turn:
                if not offers(self.tools, call.tool):
                    raise ValueError(f"tool_calls names {call.tool!r}, which is not in this agent's tools")
        if len(self.script()) >= self.max_turns:
            raise ValueError(
                f"tool_calls has {len(self.script())} turns; max_turns ({self.max_turns}) leaves no turn to answer"
            )
        return self

    def script(self) -> list[list[ScriptedCall]]:
        """The scripted calls, one list per turn."""
        return [turn if isinstance(turn, list) else [turn] for turn in self.tool_calls]

    def token_estimate(self) -> int:
        return max(self.reserve_tokens, sum(self.tokens))

    def latency_bounds(self) -> tuple[float, float]:
        if isinstance(self.latency_ms, tuple):
            return self.latency_ms
        return (self.latency_ms, self.latency_ms)


class ShellAgent(_AgentBase):
    """Runs the step input's ``argv`` as a subprocess; no shell unless ``shell: true``."""

    kind: Literal["shell"]
    shell: bool = False
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    timeout_s: float | None = Field(None, gt=0, le=MAX_SECONDS)


class PythonAgent(_AgentBase):
    """Calls ``module:function`` (sync or async) with input, context and step."""

    kind: Literal["python"]
    call: str = Field(pattern=CALL_PATTERN, description="module:function")

    def breaker_target(self, name: str) -> str:
        return f"python {self.call}"


class LlmAgent(_AgentBase, _ToolUser):
    """Any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, Ollama, LM Studio, llama.cpp server)."""

    kind: Literal["llm"]
    base_url: str = Field(
        pattern=r"^https?://\S+$", description="e.g. http://localhost:11434/v1 (…/chat/completions is added)"
    )
    model: str = Field(min_length=1)
    api_key_env: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="name of the environment variable holding the API key (the key itself is never stored)",
    )
    system: str | None = Field(None, description="system prompt")
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1, le=MAX_ATTEMPT_TOKENS)
    timeout_s: float = Field(120.0, gt=0, le=MAX_SECONDS, description="seconds to wait for an answer")
    headers: dict[str, str] = Field(default_factory=dict, description="extra HTTP headers (not the key)")
    stream: bool = Field(False, description="stream the answer; partial output appears live in the dashboard")
    json_output: bool = Field(False, description="ask for a JSON object and use the parsed object as the output")
    structured_output: bool = Field(
        True, description="send JSON schemas (plans, verdicts) as response_format json_schema; false: json_object"
    )

    @field_validator("headers")
    @classmethod
    def _no_key_in_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        for name in headers:
            if name.lower() in ("authorization", "api-key", "x-api-key"):
                raise ValueError(
                    f"header {name!r} would store a secret in the plan; "
                    "put the key in an environment variable and name it in api_key_env"
                )
        return headers

    def token_estimate(self) -> int:
        return self.reserve_tokens

    def breaker_target(self, name: str) -> str:
        """The endpoint and model; never a credential that a URL may carry, and never longer than 200 characters."""
        parts = urlsplit(self.base_url)
        host = parts.hostname or ""
        where = f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}{parts.path.rstrip('/')}"
        target = f"llm {where} {self.model}"
        if len(target) > 200:
            target = target[:180] + " #" + hashlib.sha256(target.encode()).hexdigest()[:12]
        return target


AgentConfig = Annotated[SimAgent | ShellAgent | PythonAgent | LlmAgent, Field(discriminator="kind")]


def offers(tools: list[str], name: str) -> bool:
    """Whether an agent's ``tools`` list offers ``name`` (``SERVER:*`` offers every tool of that server)."""
    server, colon, _ = name.partition(":")
    return name in tools or (bool(colon) and f"{server}:*" in tools)
