"""The python agent (and skills): calls ``module:function`` with ``input``, ``context`` and ``step``.

The function may be sync or async. It returns the output, or ``(output,
usage)`` where usage is ``{"prompt_tokens": n, "completion_tokens": m}`` or a
pair. Any exception fails the attempt with its message.

A sync function runs in a pool of daemon threads (``DaemonPool``), not in
asyncio's default executor: a thread cannot be stopped, and the default
executor's threads are waited for when the event loop and the interpreter
shut down, so a function that outlived its step's timeout kept ``loopdeck
run`` alive until it returned (forever, for one that never does). A daemon
thread is left behind instead. The pool is bounded (``POOL_THREADS``): a
process whose every pool thread is stuck in a function that never returns
runs no more sync python steps (they time out), rather than growing threads
without end. (concurrent.futures has no daemon pool since Python 3.9: ~30 lines
here.)
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import importlib
import inspect
import queue
import threading
from collections.abc import Callable
from typing import Any

from core.executors.base import AttemptFailed, Result, StepCall, Usage

POOL_THREADS = 64


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
                value = await run_in_daemon_thread(fn, kwargs)
        except AttemptFailed:
            raise
        except Exception as exc:
            raise AttemptFailed(f"{type(exc).__name__}: {exc}") from exc
        return _to_result(value)


class DaemonPool:
    """At most ``size`` daemon threads, started as needed, running calls from one queue."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._queue: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._threads = 0
        self._idle = 0
        self._pending = 0  # submitted, not yet taken by a thread
        self._lock = threading.Lock()

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            self._pending += 1
            start = self._pending > self._idle and self._threads < self.size
            if start:
                self._threads += 1
        self._queue.put(job)
        if start:
            threading.Thread(target=self._serve, name=f"loopdeck-python-{self._threads}", daemon=True).start()

    def _serve(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            job = self._queue.get()
            with self._lock:
                self._idle -= 1
                self._pending -= 1
            job()


POOL = DaemonPool(POOL_THREADS)


async def run_in_daemon_thread(fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """``fn(**kwargs)`` in the daemon pool; the awaiting task may be cancelled and leave the call behind."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    context = contextvars.copy_context()

    def settle(ok: bool, value: Any) -> None:
        if not future.done():
            (future.set_result if ok else future.set_exception)(value)

    def job() -> None:
        try:
            result, ok = context.run(fn, **kwargs), True
        except BaseException as exc:
            result, ok = exc, False
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits for this result any more
            loop.call_soon_threadsafe(settle, ok, result)

    POOL.submit(job)
    return await future


def _to_result(value: Any) -> Result:
    if isinstance(value, tuple) and len(value) == 2:
        output, usage = value
        if isinstance(usage, dict):
            return Result(output, Usage(int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))))
        if isinstance(usage, (tuple, list)) and len(usage) == 2:
            return Result(output, Usage(int(usage[0]), int(usage[1])))
    return Result(value)
