"""The llm agent: chat completions against any OpenAI-compatible server, with a tool loop when it has tools.

The prompt is the step's title, its resolved input and the context aggregated
from upstream outputs. The output is the assistant's text, or the parsed object
with ``json_output: true``; a verification step asks for a verdict instead.
Streaming agents pass each new piece of text to ``call.on_partial``.

With ``tools``, each turn offers them (the OpenAI ``tools`` protocol); the
calls the model asks for (several at once, too) go through ``call.tools``,
which records, gates and runs them, and their answers go back as ``tool``
messages, until the model answers without calls or ``max_turns`` is reached
(the attempt then fails, saying so). After a resume the turns already done are
rebuilt from the records instead of being asked again.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from typing import Any

from core.executors.base import AttemptFailed, ChatTurn, Result, StepCall, ToolPort, ToolReply, ToolRequest, Usage
from core.executors.chat import ChatClient, ChatError, Completion, schema_format
from core.executors.verdict import VERDICT_SCHEMA
from core.limits import MAX_TEXT
from core.model.plan import LlmAgent
from core.model.tools import ToolSpec
from core.redaction import cut
from core.values import ValueProblem, loads

PROVIDER = "openai"  # gen_ai.provider.name: every llm agent speaks the OpenAI chat-completions protocol
WIRE_SEPARATOR = "__"  # function names allow [a-zA-Z0-9_-]: a server's tool is SERVER__TOOL on the wire
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
        if call.tools is not None and call.type != "verification":
            return await self._tool_loop(call, call.tools)
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
        answer = await self._ask(call, 1, messages, Usage(), response_format=response_format)
        usage = Usage(answer.prompt_tokens, answer.completion_tokens, answer.estimated)
        if verify or self.config.json_output:
            return Result(parse_json_answer(answer, usage, self.client.shown), usage)
        return Result(answer.text, usage)

    async def _tool_loop(self, call: StepCall, tools: ToolPort) -> Result:
        instructions = JSON_INSTRUCTIONS if self.config.json_output else None
        messages: list[dict[str, Any]] = list(step_messages(self.config.system, call, instructions))
        await tools.ready()
        offered = [_function(spec) for spec in tools.specs]
        recorded = tools.recorded()
        for turn in recorded:
            messages.extend(_turn_messages(turn.text, turn.replies))
        spent = Usage()
        for turn_number in range(len(recorded) + 1, self.config.max_turns + 1):
            answer = await self._ask(call, turn_number, messages, spent, tools=offered)
            spent = Usage(
                spent.prompt_tokens + answer.prompt_tokens,
                spent.completion_tokens + answer.completion_tokens,
                spent.estimated or answer.estimated,
            )
            if not answer.tool_calls:
                if self.config.json_output:
                    return Result(parse_json_answer(answer, spent, self.client.shown), spent)
                return Result(answer.text, spent)
            requests = [
                ToolRequest(_tool_name(c.name), _arguments(c.arguments), c.id or f"call_{turn_number}_{i}")
                for i, c in enumerate(answer.tool_calls)
            ]
            replies = await tools.turn(turn_number, answer.text or None, requests)
            messages.extend(_turn_messages(answer.text or None, replies))
        raise AttemptFailed(
            f"the model was still calling tools after max_turns ({self.config.max_turns}) turns", spent, retryable=False
        )

    async def _ask(self, call: StepCall, turn: int, messages: list[Any], spent: Usage, **options: Any) -> Completion:
        """One model call, accounted for through ``call.meter``: admitted by the budget, then settled."""
        if call.meter is not None:
            await call.meter.admit(turn)
        try:
            answer = await self.client.complete(messages, on_delta=call.on_partial, **options)
        except ChatError as exc:
            self._spent(call, turn, Usage(), None, str(exc))
            raise AttemptFailed(str(exc), spent, retryable=exc.retryable, retry_after_s=exc.retry_after_s) from None
        usage = Usage(answer.prompt_tokens, answer.completion_tokens, answer.estimated, answer.cached_tokens)
        self._spent(call, turn, usage, answer.model, content=self._content(messages, answer))
        return answer

    def _spent(
        self,
        call: StepCall,
        turn: int,
        usage: Usage,
        answered_by: str | None,
        error: str | None = None,
        content: dict[str, str] | None = None,
    ) -> None:
        if call.meter is not None:
            call.meter.spent(ChatTurn(turn, usage, self.config.model, PROVIDER, answered_by, error, content))

    def _content(self, messages: list[Any], answer: Completion) -> dict[str, str] | None:
        """What was said, for the chat span, only with ``LOOPDECK_OTEL_CAPTURE_CONTENT=1`` (redacted, cut)."""
        if os.environ.get("LOOPDECK_OTEL_CAPTURE_CONTENT") != "1":
            return None
        said: dict[str, Any] = {"role": "assistant", "content": answer.text}
        if answer.tool_calls:
            said["tool_calls"] = [{"name": c.name, "arguments": c.arguments} for c in answer.tool_calls]
        return {
            "gen_ai.input.messages": cut(self.client.redact(json.dumps(messages, ensure_ascii=False)), MAX_TEXT),
            "gen_ai.output.messages": cut(self.client.redact(json.dumps([said], ensure_ascii=False)), MAX_TEXT),
        }

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


def _function(spec: ToolSpec) -> dict[str, Any]:
    """A tool as the chat-completions ``tools`` list offers it (``SERVER:TOOL`` becomes ``SERVER__TOOL``)."""
    name = spec.name.replace(":", WIRE_SEPARATOR)
    return {
        "type": "function",
        "function": {"name": name, "description": spec.description, "parameters": spec.input_schema},
    }


def _tool_name(wire: str) -> str:
    return wire.replace(WIRE_SEPARATOR, ":", 1)


def _arguments(text: str) -> Any:
    """The model's arguments: a JSON object, or the text itself (refused by the engine, the model told why)."""
    try:
        return json.loads(text) if text.strip() else {}
    except ValueError:
        return text


def _turn_messages(text: str | None, replies: list[ToolReply]) -> list[dict[str, Any]]:
    """The assistant's message asking for the calls, then one ``tool`` message answering each."""
    asked = {
        "role": "assistant",
        "content": text,
        "tool_calls": [
            {
                "id": r.request.model_call_id,
                "type": "function",
                "function": {
                    "name": r.request.tool.replace(":", WIRE_SEPARATOR),
                    "arguments": r.request.arguments
                    if isinstance(r.request.arguments, str)
                    else json.dumps(r.request.arguments, ensure_ascii=False),
                },
            }
            for r in replies
        ],
    }
    answers = [{"role": "tool", "tool_call_id": r.request.model_call_id, "content": r.text()} for r in replies]
    return [asked, *answers]


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
