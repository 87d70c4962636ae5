"""Every error loopdeck raises on purpose.

The tree::

    LoopdeckError                  base: catch this to catch them all
    ├── PlanError                  a plan file is invalid; carries every issue found
    ├── TransitionError            an action the step's or run's state does not allow
    ├── RunNotFound                no run has that id
    ├── StepNotFound               the run has no step with that key
    ├── LeaseHeld                  another live process drives the run
    ├── LeaseLost                  this process no longer holds the run's lease
    ├── BadInput                   malformed user input outside a plan (e.g. ``--input``)
    ├── CommandTimeout             the process driving a run did not answer in time
    ├── AgentError                 an agent called outside a step (the planner) did not answer
    └── StoreError                 the database cannot be opened, read or written
        └── StaleWrite             a compare-and-set found the row changed underneath

Library errors (SQLAlchemy, httpx, the OS) are translated at the boundary with
``raise ... from exc`` so callers only ever handle these.
"""

from __future__ import annotations

from dataclasses import dataclass


class LoopdeckError(Exception):
    """Base of every deliberate loopdeck error."""


@dataclass(frozen=True)
class PlanIssue:
    """One problem in a plan, with where it is (``steps[2].depends_on[0]``)."""

    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


class PlanError(LoopdeckError):
    """A plan is invalid. ``issues`` lists every problem found, not just the first."""

    def __init__(self, issues: list[PlanIssue], source: str | None = None, hint: str | None = None) -> None:
        self.issues = list(issues)
        self.source = source
        head = f"plan {source!r} is invalid" if source else "plan is invalid"
        lines = "\n".join(f"  - {issue}" for issue in self.issues)
        super().__init__(f"{head} ({len(self.issues)} problem(s)):\n{lines}" + (f"\n{hint}" if hint else ""))


class TransitionError(LoopdeckError):
    """An action that the current state of a step or run does not allow."""


class RunNotFound(LoopdeckError):
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"no run with id {run_id!r}; `loopdeck runs` lists the runs in this database")


class StepNotFound(LoopdeckError):
    def __init__(self, run_id: str, key: str, known: list[str] | None = None) -> None:
        from difflib import get_close_matches

        hint = ""
        if known:
            close = get_close_matches(key, known, n=1)
            if close:
                hint = f"; did you mean {close[0]!r}?"
        super().__init__(f"run {run_id} has no step {key!r}{hint}")


class CallNotFound(LoopdeckError):
    def __init__(self, run_id: str, call_id: str, known: list[str]) -> None:
        from difflib import get_close_matches

        close = get_close_matches(call_id, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        super().__init__(f"run {run_id} has no tool call {call_id!r}{hint} (`loopdeck calls {run_id}` lists them)")


class LeaseHeld(LoopdeckError):
    """Another live process holds the run's lease."""


class LeaseLost(LoopdeckError):
    """This process lost the run's lease (another process took the run over)."""


class BadInput(LoopdeckError):
    """Malformed input given on the command line or through the API."""


class CommandTimeout(LoopdeckError):
    """A command was queued for the driving process, which did not answer in time."""


class AgentError(LoopdeckError):
    """An agent called outside a run's steps (the planner) failed to answer; the message says how."""


class StoreError(LoopdeckError):
    """The database could not be opened, read or written."""


class StaleWrite(StoreError):
    """A compare-and-set update matched no row: the state changed underneath."""
