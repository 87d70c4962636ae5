"""A client for OpenAI-compatible chat-completions endpoints (OpenAI, vLLM, Ollama, LM Studio, llama.cpp).

One request, one answer: ``ChatClient.complete`` returns the assistant's text
and the usage, or raises ``ChatError`` saying whether trying again can help
(connection errors, timeouts, 429 and 5xx can; 400/401/403/404 cannot) and how
long the server asked us to wait (``Retry-After``).

The API key is read from the environment variable the agent names, at request
time, and never leaves this module: every message this module produces is
passed through ``redact`` first (then cut to length, never the other way
round), because servers sometimes echo what they got.

Streams are read with httpx-sse. A stream that ends without its end marker
(``data: [DONE]`` or a choice's ``finish_reason``) or that carries an error
event is a failed, retryable attempt, never a successful truncated answer.
"""

from __future__ import annotations

import email.utils
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from httpx_sse import EventSource, SSEError

from core.model.plan import LlmAgent
from core.redaction import Redactor, cut

BODY_CHARS = 300
RETRYABLE_STATUS = frozenset({408, 409, 425, 429})


class ChatError(Exception):
    """A request that did not produce an answer. ``retryable``: another attempt may succeed."""

    def __init__(
        self, message: str, *, retryable: bool, retry_after_s: float | None = None, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after_s = retry_after_s
        self.status = status


@dataclass(frozen=True, slots=True)
class ModelCall:
    """A tool call the model asked for: its id (may be empty), the function's name, the arguments' JSON text."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    estimated: bool  # the server sent no usage: tokens were estimated from the text
    tool_calls: tuple[ModelCall, ...] = ()
    model: str | None = None  # the model that answered, as the server names it
    cached_tokens: int = 0  # of the prompt tokens, those read from the server's cache (usage.prompt_tokens_details)


def estimate_tokens(text: str) -> int:
    """About four characters per token: the usual rule of thumb for English text and JSON."""
    return max(1, (len(text) + 3) // 4) if text else 0


class ChatClient:
    Error = ChatError  # what ``complete`` raises (for callers that import this module lazily)

    def __init__(self, name: str, config: LlmAgent) -> None:
        self.name = name
        self.config = config
        self.url = config.base_url.rstrip("/") + "/chat/completions"
        self._client: httpx.AsyncClient | None = None

    # -- the key --------------------------------------------------------------------

    def _key(self) -> str | None:
        env = self.config.api_key_env
        if env is None:
            return None
        key = os.environ.get(env)
        if not key:
            raise ChatError(
                f'agent "{self.name}" reads its API key from ${env}, which is not set; export {env}=... before running',
                retryable=False,
            )
        return key

    def secrets(self) -> list[str]:
        """What must never be stored or shown: the key, as the environment holds it now."""
        env = self.config.api_key_env
        key = os.environ.get(env) if env else None
        return [key] if key else []

    def redact(self, text: str) -> str:
        """``text`` with the agent's API key (if any) replaced, so it can be stored or shown."""
        return Redactor(self.secrets()).text(text)

    def shown(self, text: str) -> str:
        """Text from the server as it may appear in a message: redacted, then cut to ``BODY_CHARS``."""
        return cut(self.redact(text), BODY_CHARS)

    # -- requests ---------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", **self.config.headers}
        key = self._key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def body(
        self,
        messages: list[dict[str, Any]],
        response_format: dict[str, Any] | None,
        tools: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.config.model, "messages": messages}
        if tools:
            body["tools"] = tools
        if self.config.temperature is not None:
            body["temperature"] = self.config.temperature
        if self.config.max_tokens is not None:
            body["max_tokens"] = self.config.max_tokens
        if response_format is not None:
            body["response_format"] = response_format
        if self.config.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    async def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        response_format: dict[str, Any] | None = None,
        on_delta: Callable[[str], None] | None = None,
        tools: list[dict[str, Any]] | None = None,
    ) -> Completion:
        """Send one chat-completions request (offering ``tools``); stream it when the agent says ``stream: true``."""
        try:
            return await self._complete(messages, response_format, on_delta, tools)
        except ChatError as exc:
            raise ChatError(
                self.redact(str(exc)), retryable=exc.retryable, retry_after_s=exc.retry_after_s, status=exc.status
            ) from None

    async def _complete(
        self,
        messages: list[dict[str, Any]],
        response_format: dict[str, Any] | None,
        on_delta: Callable[[str], None] | None,
        tools: list[dict[str, Any]] | None = None,
    ) -> Completion:
        body = self.body(messages, response_format, tools)
        client = self._http()
        try:
            async with client.stream("POST", self.url, json=body, headers=self._headers()) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise self._status_error(response)
                streamed = response.headers.get("content-type", "").startswith("text/event-stream")
                if self.config.stream and streamed:  # a server may ignore `stream` and answer in one piece
                    return await self._read_stream(response, messages, on_delta)
                await response.aread()
                return self._read_json(response, messages)
        except httpx.TimeoutException as exc:
            raise ChatError(
                f"no answer from {self.url} within {self.config.timeout_s:g}s ({type(exc).__name__})", retryable=True
            ) from None
        except httpx.TransportError as exc:
            raise ChatError(f"cannot reach {self.url}: {type(exc).__name__}: {exc}", retryable=True) from None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None or self._client.is_closed:
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(self.config.timeout_s), trust_env=False)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- answers --------------------------------------------------------------------------

    def _status_error(self, response: httpx.Response) -> ChatError:
        status = response.status_code
        detail = self.shown(_error_detail(response))
        message = f"{self.url} answered {status} {response.reason_phrase}" + (f": {detail}" if detail else "")
        retryable = status >= 500 or status in RETRYABLE_STATUS
        if status in (401, 403):
            message += (
                f" (check the key in ${self.config.api_key_env})"
                if self.config.api_key_env
                else " (the agent sends no key; set api_key_env)"
            )
        elif status == 404:
            message += f' (check base_url "{self.config.base_url}" and model "{self.config.model}")'
        return ChatError(
            message, retryable=retryable, retry_after_s=retry_after(response.headers.get("retry-after")), status=status
        )

    def _read_json(self, response: httpx.Response, messages: list[dict[str, Any]]) -> Completion:
        try:
            data = response.json()
            message = data["choices"][0]["message"]
            text = message.get("content") or ""
            if not isinstance(text, str):
                raise TypeError(f"content is {type(text).__name__}")
            calls = tuple(_model_call(c) for c in message.get("tool_calls") or ())
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise ChatError(
                f"malformed answer from {self.url} ({_describe(exc)}): {self.shown(response.text)!r}", retryable=True
            ) from None
        return _with_usage(text, data.get("usage"), messages, calls, _model_name(data))

    async def _read_stream(
        self, response: httpx.Response, messages: list[dict[str, Any]], on_delta: Callable[[str], None] | None
    ) -> Completion:
        """Server-sent events: chunks until ``data: [DONE]``; usage in the last chunk.

        The answer counts only if the stream says it is complete (``[DONE]`` or a
        ``finish_reason``); one that breaks off, or an error event, fails the attempt.
        """
        parts: list[str] = []
        calls: dict[int, dict[str, str]] = {}  # tool calls arrive in pieces, by index
        usage: Any = None
        model: str | None = None
        finished = False
        try:
            async for sse in EventSource(response).aiter_sse():
                if sse.data.strip() == "[DONE]":
                    finished = True
                    break
                chunk = self._chunk(sse.event, sse.data)
                if chunk.get("usage"):
                    usage = chunk["usage"]
                model = model or _model_name(chunk)
                choices = chunk.get("choices") or []
                choice = choices[0] if choices and isinstance(choices[0], dict) else {}
                delta = (choice.get("delta") or {}).get("content") if isinstance(choice.get("delta"), dict) else None
                if isinstance(delta, str) and delta:
                    parts.append(delta)
                    if on_delta is not None:
                        on_delta(delta)
                if isinstance(choice.get("delta"), dict):
                    _merge_call_pieces(calls, choice["delta"].get("tool_calls"))
                if choice.get("finish_reason"):
                    finished = True  # usage may still follow in a last chunk
        except SSEError as exc:
            raise ChatError(f"malformed stream from {self.url}: {exc}", retryable=True) from None
        if not finished:
            raise ChatError(
                f"the stream from {self.url} broke off after {len(''.join(parts)):,} characters "
                "(no [DONE] and no finish_reason)",
                retryable=True,
            )
        made = tuple(ModelCall(c["id"], c["name"], c["arguments"]) for _, c in sorted(calls.items()))
        return _with_usage("".join(parts), usage, messages, made, model)

    def _chunk(self, event: str, data: str) -> dict[str, Any]:
        """One event's JSON; an error event (or an ``error`` in the data) is a retryable failure."""
        try:
            chunk = json.loads(data)
        except ValueError:
            raise ChatError(
                f"malformed stream chunk from {self.url} (not JSON): {self.shown(data)!r}", retryable=True
            ) from None
        if not isinstance(chunk, dict):
            raise ChatError(
                f"malformed stream chunk from {self.url} (not an object): {self.shown(data)!r}", retryable=True
            )
        if event == "error" or chunk.get("error"):
            err = chunk.get("error")
            detail = err.get("message") if isinstance(err, dict) else err if isinstance(err, str) else data
            raise ChatError(f"{self.url} sent an error in the stream: {self.shown(str(detail))}", retryable=True)
        return chunk


def schema_format(config: LlmAgent, name: str, schema: dict[str, Any]) -> dict[str, Any]:
    """``response_format`` asking for ``schema``: strict JSON schema where the agent allows, else any JSON object."""
    if config.structured_output:
        return {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}
    return {"type": "json_object"}


def _model_call(data: Any) -> ModelCall:
    """One ``tool_calls`` entry of an answer (malformed: a TypeError or KeyError the caller reports)."""
    function = data["function"]
    arguments = function.get("arguments")
    if not isinstance(arguments, str):  # some servers send the object itself
        arguments = json.dumps(arguments if arguments is not None else {})
    return ModelCall(str(data.get("id") or ""), str(function["name"]), arguments)


def _merge_call_pieces(calls: dict[int, dict[str, str]], pieces: Any) -> None:
    """Add a stream chunk's ``delta.tool_calls`` pieces: id and name come once, arguments in parts."""
    for piece in pieces if isinstance(pieces, list) else ():
        if not isinstance(piece, dict):
            continue
        index = piece.get("index", len(calls))
        call = calls.setdefault(
            index if isinstance(index, int) else len(calls), {"id": "", "name": "", "arguments": ""}
        )
        call["id"] = str(piece.get("id") or call["id"])
        function = piece.get("function")
        if not isinstance(function, dict):
            function = {}
        call["name"] += str(function.get("name") or "")
        call["arguments"] += str(function.get("arguments") or "")


def _with_usage(
    text: str,
    usage: Any,
    messages: list[dict[str, Any]],
    calls: tuple[ModelCall, ...] = (),
    model: str | None = None,
) -> Completion:
    if (
        isinstance(usage, dict)
        and isinstance(usage.get("prompt_tokens"), int)
        and isinstance(usage.get("completion_tokens"), int)
    ):
        details = usage.get("prompt_tokens_details")
        cached = details.get("cached_tokens") if isinstance(details, dict) else None
        cached = cached if isinstance(cached, int) and 0 <= cached <= usage["prompt_tokens"] else 0
        return Completion(text, usage["prompt_tokens"], usage["completion_tokens"], False, calls, model, cached)
    prompt = sum(estimate_tokens(m.get("content") or "") + 4 for m in messages)
    written = text + "".join(c.name + c.arguments for c in calls)
    return Completion(text, prompt, estimate_tokens(written), True, calls, model)


def _model_name(data: dict[str, Any]) -> str | None:
    """The ``model`` an answer names (cut to 200 characters), if it names one."""
    name = data.get("model")
    return name[:200] if isinstance(name, str) and name else None


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds from now: a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _error_detail(response: httpx.Response) -> str:
    """The server's own words, whole: ``error.message`` of an OpenAI-style error body, else the body.

    Not cut here: the caller redacts, then cuts.
    """
    try:
        data = response.json()
    except ValueError:
        return response.text.strip()
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return err["message"]
        if isinstance(err, str):
            return err
        if isinstance(data.get("message"), str):
            return data["message"]
    return response.text.strip()


def _describe(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"no {exc.args[0]!r}"
    if isinstance(exc, IndexError):
        return "no choices"
    if isinstance(exc, ValueError):
        return "not JSON"
    return str(exc)
