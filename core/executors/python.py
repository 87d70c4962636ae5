"""The python agent (and skills): calls ``module:function`` with ``input``, ``context`` and ``step``.

The function may be sync (run in a thread) or async. It returns the output,
or ``(output, usage)`` where usage is ``{"prompt_tokens": n, "completion_tokens": m}``
or a pair. Any exception fails the attempt with its message.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Callable
from typing import Any

from . import AttemptFailed, Result, StepCall, Usage


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
                value = await asyncio.to_thread(fn, **kwargs)
        except AttemptFailed:
            raise
        except Exception as exc:  # noqa: BLE001 - the agent's failure is the step's failure
            raise AttemptFailed(f"{type(exc).__name__}: {exc}") from exc
        return _to_result(value)


def _to_result(value: Any) -> Result:
    if isinstance(value, tuple) and len(value) == 2:
        output, usage = value
        if isinstance(usage, dict):
            return Result(output, Usage(int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))))
        if isinstance(usage, (tuple, list)) and len(usage) == 2:
            return Result(output, Usage(int(usage[0]), int(usage[1])))
    return Result(value)
