"""MCP servers as tool sources, through the official ``mcp`` SDK (2.x ``Client``): stdio or streamable HTTP.

A server starts when a run first needs one of its tools, lists its tools
once, is shared by the run's steps, and stops with the run. The SDK's client
lives in anyio task groups that must be entered and left by one task, so each
server gets an owner task that opens the client, waits until the run closes
it, and closes it; calls from the attempts' tasks go through the open client.

A server that cannot start or list its tools is a ``ToolError`` naming it
(its last words on stderr included). MCP's annotations become the hints
loopdeck gates by; as the specification says, a tool that is not read-only is
taken as destructive unless it says ``destructiveHint: false``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import tempfile
from typing import Any

from core.model.tools import McpServer, ToolSpec
from core.tools.skills import ToolError
from core.values import to_json_value


class ServerFailure(ToolError):
    """The server itself failed (it cannot start, or its connection broke): held against its circuit breaker.
    A tool that answers with an error is a ``ToolError`` only: the server works."""


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_env(value: str, server: str) -> str:
    """``${NAME}`` from this process's environment: secrets stay out of the plan (which is stored)."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise ToolError(f'MCP server "{server}" needs ${name}, which is not set; export it before running')
        return os.environ[name]

    return _ENV_REF.sub(one, value)


class McpConnection:
    """One running MCP server of a run."""

    def __init__(self, name: str, config: McpServer) -> None:
        self.name, self.config = name, config
        self.tools: dict[str, ToolSpec] = {}
        self._client: Any = None
        self._owner: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()
        self._errlog: Any = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Start the server and list its tools (once; concurrent callers wait for the first)."""
        async with self._lock:
            if self._client is not None:
                return
            ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._owner = asyncio.create_task(self._own(ready), name=f"MCP server {self.name}")
            try:
                await asyncio.wait_for(asyncio.shield(ready), self.config.timeout_s)
            except TimeoutError:
                await self.close()
                raise ServerFailure(
                    f'MCP server "{self.name}" did not answer within {self.config.timeout_s:g}s{self._last_words()}'
                ) from None
            except ToolError:
                await self.close()
                raise

    async def _own(self, ready: asyncio.Future[None]) -> None:
        from mcp import Client

        try:
            async with Client(self._transport(), read_timeout_seconds=self.config.timeout_s) as client:
                listed = await client.list_tools()
                self.tools = {t.name: self._spec(t) for t in listed.tools}
                self._client = client
                ready.set_result(None)
                await self._closing.wait()
        except BaseException as exc:  # every way a server fails to start is said, naming it
            if not ready.done():
                ready.set_exception(
                    ServerFailure(f'MCP server "{self.name}" cannot start: {_why(exc)}{self._last_words()}')
                )
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            self._client = None

    def _transport(self) -> Any:
        cfg = self.config
        if cfg.url is not None:
            from mcp.client.streamable_http import streamable_http_client

            return streamable_http_client(expand_env(cfg.url, self.name))
        from mcp.client.stdio import StdioServerParameters, stdio_client

        command = [expand_env(part, self.name) for part in cfg.command or []]
        env = {k: expand_env(v, self.name) for k, v in cfg.env.items()}
        params = StdioServerParameters(command=command[0], args=command[1:], env=env or None, cwd=cfg.cwd)
        self._errlog = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")  # noqa: SIM115 - closed by close()
        return stdio_client(params, errlog=self._errlog)

    def _spec(self, tool: Any) -> ToolSpec:
        hints = tool.annotations
        read_only = bool(hints and hints.read_only_hint)
        destructive = not read_only if hints is None or hints.destructive_hint is None else bool(hints.destructive_hint)
        return ToolSpec(
            name=f"{self.name}:{tool.name}",
            description=tool.description or tool.title or tool.name,
            input_schema=dict(tool.input_schema or {"type": "object", "properties": {}}),
            server=self.name,
            destructive=destructive and not read_only,
            read_only=read_only,
            idempotent=bool(hints and hints.idempotent_hint),
        )

    async def call(self, tool: str, arguments: dict[str, Any]) -> Any:
        """Call one of the server's tools; its result as JSON (structured content, else the text)."""
        await self.start()
        try:
            result = await self._client.call_tool(tool, arguments)
        except Exception as exc:
            raise ServerFailure(f'MCP server "{self.name}" failed on {tool}: {_why(exc)}') from exc
        text = "\n".join(getattr(block, "text", f"[{getattr(block, 'type', 'content')}]") for block in result.content)
        if result.is_error:
            raise ToolError(text or "the tool reported an error")
        if result.structured_content is not None:
            return to_json_value(result.structured_content)
        return _json_or_text(text)

    async def close(self) -> None:
        self._closing.set()
        if self._owner is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._owner, 10)
            self._owner = None
        if self._errlog is not None:
            self._errlog.close()
            self._errlog = None

    def _last_words(self) -> str:
        """The last line the server wrote on stderr, if any."""
        if self._errlog is None:
            return ""
        with contextlib.suppress(Exception):
            self._errlog.seek(0)
            lines = [line.strip() for line in self._errlog.read().splitlines() if line.strip()]
            if lines:
                return f" (its last words: {lines[-1][:300]})"
        return ""


def _json_or_text(text: str) -> Any:
    """A text result that is a JSON object or array is kept as that value; any other text as it is."""
    if text.lstrip()[:1] in ("{", "["):
        with contextlib.suppress(Exception):  # not JSON, or JSON loopdeck cannot store: kept as text
            return to_json_value(json.loads(text))
    return text


def _why(exc: BaseException) -> str:
    """A one-line reason from an exception (task groups wrap the real one)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
