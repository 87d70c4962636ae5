"""The llm agent: one chat-completions request per attempt, to any OpenAI-compatible server.

The prompt is the step's title, its resolved input and the context aggregated
from upstream outputs. The output is the assistant's text, or the parsed object
with ``json_output: true``; a verification step asks for a verdict instead.
Streaming agents pass each new piece of text to ``call.on_partial``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from core.executors.base import AttemptFailed, Result, StepCall, Usage
from core.executors.chat import ChatClient, ChatError, Completion, schema_format
from core.executors.verdict import VERDICT_SCHEMA
from core.model.plan import LlmAgent
from core.values import ValueProblem, loads

_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)

VERIFY_INSTRUCTIONS = (
    "You are checking the work described below. Answer with a JSON object "
    '{"passed": true|false, "reason": "<one or two sentences>"}.'
)
JSON_INSTRUCTIONS = "Answer with one JSON object and nothing else."


class LlmExecutor:
    interruptible = True

    def __init__(self, name: str, config: LlmAgent) -> None:
        self.config = config
        self.client = ChatClient(name, config)

    async def execute(self, call: StepCall) -> Result:
        verify = call.type == "verification"
        messages = step_messages(
            self.config.system,
            call,
            VERIFY_INSTRUCTIONS if verify else JSON_INSTRUCTIONS if self.config.json_output else None,
        )
        response_format = None
        if verify:
            response_format = schema_format(self.config, "verdict", VERDICT_SCHEMA)
        elif self.config.json_output:
            response_format = {"type": "json_object"}
        try:
            answer = await self.client.complete(messages, response_format=response_format, on_delta=call.on_partial)
        except ChatError as exc:
            raise AttemptFailed(str(exc), retryable=exc.retryable, retry_after_s=exc.retry_after_s) from None
        usage = Usage(answer.prompt_tokens, answer.completion_tokens, answer.estimated)
        if verify or self.config.json_output:
            return Result(parse_json_answer(answer, usage, self.client.shown), usage)
        return Result(answer.text, usage)

    def secrets(self) -> list[str]:
        """The key this agent sends: the controller redacts it from everything the attempt returns."""
        return self.client.secrets()

    async def aclose(self) -> None:
        await self.client.aclose()


def step_messages(system: str | None, call: StepCall, instructions: str | None) -> list[dict[str, str]]:
    """System prompt (if any), then one user message: instructions, step, input, context."""
    parts = [instructions] if instructions else []
    parts.append(f"Step: {call.title}")
    if call.input not in (None, {}, [], ""):
        shown = (
            call.input
            if isinstance(call.input, str)
            else json.dumps(call.input, indent=2, ensure_ascii=False, default=str)
        )
        parts.append(f"Input:\n{shown}")
    if call.context:
        lines = ["Context from earlier steps:"]
        for item in call.context:
            lines.append(f"- {item.get('title') or item.get('key')} ({item.get('key')}): {_text(item.get('output'))}")
        parts.append("\n".join(lines))
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": "\n\n".join(parts)})
    return messages


def parse_json_answer(answer: Completion, usage: Usage, shown: Callable[[str], str]) -> Any:
    """The answer as JSON (a ```json fence around it is tolerated); a retryable failure otherwise.

    ``shown`` redacts and cuts the answer for the error message (never cut first).
    """
    text = answer.text.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    try:
        return loads(text, "the answer")
    except ValueProblem:
        raise AttemptFailed(f"the model was asked for JSON and answered: {shown(answer.text)!r}", usage) from None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
