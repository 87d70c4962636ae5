"""What the command line prints and how it exits: consoles, strict JSON, one-line errors, exit codes.

Exit codes: 0 the run succeeded (or the command did what it was asked);
1 the run ended failed, rejected or canceled, or the action was refused;
2 bad input (an invalid plan, an unknown run or step, malformed JSON, a
database that cannot be opened); 3 an unexpected error (a bug: one line, and
the traceback with ``LOOPDECK_DEBUG=1``); 130 interrupted (the run stays resumable).

Never a traceback: every error is one line on stderr, with any URL's password masked.

Rich is loaded by the first table or styled line, not before: ``--help`` and
the commands that only say plain lines (``say``: ``approve``, ``cancel``, their
errors) never load it, some 20 ms of their start.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import traceback
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from core import (
    AgentError,
    BadInput,
    CallNotFound,
    CommandTimeout,
    LeaseHeld,
    LeaseLost,
    LoopdeckError,
    PlanError,
    RunNotFound,
    StepNotFound,
    StoreError,
    TransitionError,
    dumps,
    mask_urls,
)
from tui.text.literal import clean

if TYPE_CHECKING:
    from rich.console import Console

EXIT_OK, EXIT_RUN_NOT_OK, EXIT_BAD_INPUT, EXIT_BUG, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
BAD_INPUT_ERRORS = (PlanError, BadInput, RunNotFound, StepNotFound, CallNotFound, StoreError)
REFUSED_ERRORS = (TransitionError, LeaseHeld, LeaseLost, CommandTimeout, AgentError)


_CONSOLES: dict[bool, Console] = {}  # (made at first use: ``console``)


def console(stderr: bool) -> Console:
    """The Rich console of stderr or stdout, made (and Rich loaded) at its first use: plain, unwrapped lines
    when not on a terminal (logs and pipes are read by tools)."""
    made = _CONSOLES.get(stderr)
    if made is None:
        from rich.console import Console

        made = Console(stderr=stderr, highlight=False, soft_wrap=True)
        if not made.is_terminal:
            made = Console(stderr=stderr, highlight=False, soft_wrap=True, width=200)
        _CONSOLES[stderr] = made
    return made


if TYPE_CHECKING:
    err: Console
    out: Console


def __getattr__(name: str) -> Console:
    """``err`` and ``out``, the consoles of stderr and stdout, made when a module first imports them."""
    if name in ("err", "out"):
        return console(stderr=name == "err")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def say(text: str) -> None:
    """One plain line on stderr, shown literally (control characters made visible, ``clean``), without Rich:
    what ``err.print(literal(text))`` writes. A closed stderr (``2>&-``, a reader gone) takes nothing."""
    stream = sys.stderr
    if stream is None:
        return
    with contextlib.suppress(BrokenPipeError, ValueError):
        stream.write(clean(text) + "\n")
        stream.flush()


def print_json(data: Any) -> None:
    """Machine-readable, strict JSON on stdout (never NaN).

    ASCII-escaped, so no untrusted byte reaches the terminal raw.
    """
    sys.stdout.write(dumps(data, indent=2) + "\n")
    sys.stdout.flush()


def write_text(path: str, text: str) -> None:
    """Write an output file; a missing directory or a directory in the way is bad input, said plainly."""
    try:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
    except IsADirectoryError:
        raise BadInput(f"cannot write {path}: it is a directory; give a file name") from None
    except FileNotFoundError:
        raise BadInput(f"cannot write {path}: the directory {os.path.dirname(path) or '.'} does not exist") from None
    except OSError as exc:
        raise BadInput(f"cannot write {path}: {exc.strerror or exc}") from None


def listing(as_json: bool, data: Any, empty: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> int:
    """A listing command's output: JSON, a line saying there is nothing yet, or a table."""
    if as_json:
        print_json(data)
    elif not data:
        say(empty)
    else:
        from rich.table import Table

        table = Table(box=None, pad_edge=False)
        for col in columns:
            table.add_column(col, no_wrap=True)
        for row in rows:
            table.add_row(*row)
        console(stderr=False).print(table)
    return EXIT_OK


def print_columns(header: tuple[str, ...], rows: list[tuple[str, ...]], fold: int | None = None) -> None:
    """Clean text in aligned columns on stdout, the header bold: as a borderless Rich table looks, written at
    once (``tui.text.columns``: Rich's own table took seconds for thousands of rows)."""
    from rich.text import Text

    from tui.text.columns import columns

    out = console(stderr=False)
    lines = columns(header, rows, out.width, fold)
    out.print(Text(lines[0], style="bold"))
    try:
        out.file.write("".join(line + "\n" for line in lines[1:]))
        out.file.flush()
    except BrokenPipeError:  # (`loopdeck show RUN | head`: what Rich's own printing does)
        out.on_broken_pipe()


class Interrupted:
    """The run this process drives, so an interruption can name the command that resumes it."""

    run_id: str | None = None


def debug() -> bool:
    return os.environ.get("LOOPDECK_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")


def guarded(make: Callable[[], Awaitable[int]]) -> int:
    """Run a command's coroutine; map every error to its exit code and one clear line (secrets masked)."""
    import asyncio  # here, not at the top: `loopdeck --help` never needs it

    try:
        return asyncio.run(make())  # type: ignore[arg-type]
    except KeyboardInterrupt:
        run_id = Interrupted.run_id
        if run_id:
            say(f"interrupted; run {run_id} keeps its state: `loopdeck resume {run_id} --headless` continues it")
        else:
            say("interrupted")
        return EXIT_INTERRUPTED
    except BAD_INPUT_ERRORS as exc:
        say(mask_urls(f"loopdeck: {exc}"))
        return EXIT_BAD_INPUT
    except (*REFUSED_ERRORS, LoopdeckError) as exc:
        say(mask_urls(f"loopdeck: {exc}"))
        return EXIT_RUN_NOT_OK
    except Exception as exc:
        return unexpected(exc)


def unexpected(exc: BaseException) -> int:
    """A bug: one masked line, the traceback (without locals) only when LOOPDECK_DEBUG asks for it."""
    if debug():
        sys.stderr.write(mask_urls("".join(traceback.format_exception(exc))))
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    say(
        mask_urls(f"loopdeck: unexpected error: {type(exc).__name__}: {first}"[:500])
        + "; this is a bug (LOOPDECK_DEBUG=1 shows the traceback)"
    )
    return EXIT_BUG


class _OneLine(logging.Formatter):
    """Engine log records on stderr as one masked line each; their traceback only with LOOPDECK_DEBUG."""

    def format(self, record: logging.LogRecord) -> str:
        text = f"loopdeck: {record.levelname.lower()}: {record.getMessage()}"
        if record.exc_info and debug():
            text += "\n" + self.formatException(record.exc_info)
        return mask_urls(text)


def log_to_stderr() -> None:
    """Warnings and errors of the engine on stderr (not while the dashboard owns the terminal)."""
    logger = logging.getLogger("loopdeck")
    if not any(getattr(h, "loopdeck_cli", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_OneLine())
        handler.setLevel(logging.WARNING)
        handler.loopdeck_cli = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
