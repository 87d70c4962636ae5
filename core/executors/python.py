"""The python agent (and skills): calls ``module:function`` with ``input``, ``context`` and ``step``.

The function may be sync or async. It returns the output, or ``(output,
usage)`` where usage is ``{"prompt_tokens": n, "completion_tokens": m}`` or a
pair. Any exception fails the attempt with its message.

A sync function runs in a daemon thread of its own, not in asyncio's default
executor: a thread cannot be stopped, and the default executor's threads are
waited for when the event loop and the interpreter shut down, so a function
that outlived its step's timeout kept ``loopdeck run`` alive until it returned
(forever, for one that never does). A daemon thread is left behind instead.
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib
import inspect
import threading
from collections.abc import Callable
from typing import Any

from core.executors import AttemptFailed, Result, StepCall, Usage


class PythonExecutor:
    def __init__(self, call: str) -> None:
        self.call = call  # module:function
        self._fn: Callable[..., Any] | None = None

    @property
    def interruptible(self) -> bool:
        return inspect.iscoroutinefunction(self._resolve())

    def _resolve(self) -> Callable[..., Any]:
        if self._fn is None:
            module_name, _, attr = self.call.partition(":")
            try:
                module = importlib.import_module(module_name)
                self._fn = getattr(module, attr)
            except (ImportError, AttributeError) as exc:
                raise AttemptFailed(f"cannot load {self.call}: {exc}", retryable=False) from exc
            if not callable(self._fn):
                raise AttemptFailed(f"{self.call} is not callable", retryable=False)
        return self._fn

    async def execute(self, call: StepCall) -> Result:
        fn = self._resolve()
        step = {"run_id": call.run_id, "key": call.key, "title": call.title, "type": call.type, "attempt": call.attempt}
        kwargs = {"input": call.input, "context": call.context, "step": step}
        try:
            if inspect.iscoroutinefunction(fn):
                value = await fn(**kwargs)
            else:
                value = await run_in_daemon_thread(fn, kwargs, f"loopdeck-step-{call.key}")
        except AttemptFailed:
            raise
        except Exception as exc:  # noqa: BLE001 - the agent's failure is the step's failure
            raise AttemptFailed(f"{type(exc).__name__}: {exc}") from exc
        return _to_result(value)


async def run_in_daemon_thread(fn: Callable[..., Any], kwargs: dict[str, Any], name: str) -> Any:
    """``fn(**kwargs)`` in a new daemon thread; the awaiting task may be cancelled and leave it behind."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    context = contextvars.copy_context()

    def settle(ok: bool, value: Any) -> None:
        if not future.done():
            (future.set_result if ok else future.set_exception)(value)

    def target() -> None:
        try:
            result, ok = context.run(fn, **kwargs), True
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
            result, ok = exc, False
        try:
            loop.call_soon_threadsafe(settle, ok, result)
        except RuntimeError:  # the loop is closed: nobody waits for this result any more
            pass

    threading.Thread(target=target, name=name, daemon=True).start()
    return await future


def _to_result(value: Any) -> Result:
    if isinstance(value, tuple) and len(value) == 2:
        output, usage = value
        if isinstance(usage, dict):
            return Result(output, Usage(int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))))
        if isinstance(usage, (tuple, list)) and len(usage) == 2:
            return Result(output, Usage(int(usage[0]), int(usage[1])))
    return Result(value)
