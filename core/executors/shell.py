"""The shell agent: runs ``input.argv`` as a subprocess (no shell unless ``shell: true``).

Exit code 0 succeeds with stdout as output; any other exit fails the attempt
with the tail of stderr. On timeout or cancel the whole process group is
killed, so no grandchild outlives its step.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
from typing import Any

from core.executors.base import AttemptFailed, ExitStatus, Result, StepCall
from core.model.plan import ShellAgent

TAIL_CHARS = 2000


class ShellExecutor:
    interruptible = True

    def __init__(self, config: ShellAgent) -> None:
        self.config = config

    async def execute(self, call: StepCall) -> Result:
        argv = _argv(call, self.config.shell)
        env = {**os.environ, **self.config.env} if self.config.env else None
        try:
            pipes: dict[str, Any] = {
                "stdout": asyncio.subprocess.PIPE,
                "stderr": asyncio.subprocess.PIPE,
                "stdin": asyncio.subprocess.DEVNULL,
                "cwd": self.config.cwd,
                "env": env,
                "start_new_session": True,  # its own process group: a kill reaches its children too
            }
            if isinstance(argv, str):  # with shell: true
                proc = await asyncio.create_subprocess_shell(argv, **pipes)
            else:
                proc = await asyncio.create_subprocess_exec(*argv, **pipes)
        except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
            raise AttemptFailed(
                f"cannot start {argv[0] if isinstance(argv, list) else argv!r}: {exc}", retryable=False
            ) from exc
        try:
            stdout, stderr = await asyncio.wait_for(proc.communicate(), self.config.timeout_s)
        except (asyncio.CancelledError, TimeoutError):
            _kill_group(proc)
            await proc.wait()
            if self.config.timeout_s is not None and not asyncio.current_task().cancelling():  # type: ignore[union-attr]
                raise AttemptFailed(f"timed out after {self.config.timeout_s:g}s; the process was killed") from None
            raise
        out = stdout.decode("utf-8", errors="replace")
        code = await proc.wait()  # already exited (communicate returned); wait gives the code as an int
        if code != 0:
            tail = stderr.decode("utf-8", errors="replace")[-TAIL_CHARS:].strip()
            raise ExitStatus(code, tail)
        return Result(out)


def _argv(call: StepCall, shell: bool) -> list[str] | str:
    """The command: ``input.argv`` (a list); with ``shell: true`` also ``input.command`` (a string)."""
    data: Any = call.input if isinstance(call.input, dict) else {}
    if shell and isinstance(data.get("command"), str) and data["command"].strip():
        return data["command"]
    argv = data.get("argv")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, (str, int, float)) for a in argv):
        need = '"argv" (a non-empty list of strings)' + (' or "command" (a string)' if shell else "")
        raise AttemptFailed(f'step "{call.key}" runs on a shell agent, so its input needs {need}', retryable=False)
    return shlex.join(str(a) for a in argv) if shell else [str(a) for a in argv]


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
