"""A run's result: what it produced, in one sentence what happened, and the evidence.

Every run that ends records one (``runs.result_json``), written with its
final status by the one function that ends runs (``engine.transitions.end_run``).

    answer    the output of the run's final steps: one final step's output as
              itself, several as a mapping by step key (those that succeeded);
              None when none succeeded. An operator who finishes a run early
              gives the answer instead.
    summary   one sentence: the reason it ended, if any, then "18 of 20 steps
              succeeded; verification "tests" passed".
    evidence  {"failed", "skipped", "rejected", "never_ran": step keys,
               "verifications": {key: verdict}}.
    finished_by, finish_reason   the operator who finished the run early, and why.

The final steps are the steps nothing depends on, leaving verification steps
aside (they judge the answer; they are not it): in a plan "write -> verify",
the answer is what "write" produced.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


class ResultStep(Protocol):
    """What the result needs to know of a step (``StepState`` and ``StepRecord`` alike)."""

    @property
    def key(self) -> str: ...
    @property
    def idx(self) -> int: ...
    @property
    def status(self) -> Any: ...  # a StepStatus (a str enum)
    @property
    def output(self) -> Any: ...
    @property
    def attempts(self) -> int: ...


@dataclass(frozen=True)
class RunResult:
    answer: Any
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)
    finished_by: str | None = None
    finish_reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"answer": self.answer, "summary": self.summary, "evidence": self.evidence}
        if self.finished_by is not None:
            data["finished_by"] = self.finished_by
            data["finish_reason"] = self.finish_reason
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunResult:
        return cls(
            answer=data.get("answer"),
            summary=str(data.get("summary", "")),
            evidence=dict(data.get("evidence") or {}),
            finished_by=data.get("finished_by"),
            finish_reason=data.get("finish_reason"),
        )


@dataclass(frozen=True)
class Finished:
    """An operator ended the run early: who, why, and (if given) their answer."""

    by: str
    reason: str | None = None
    answer: Any = None
    has_answer: bool = False


def final_keys(steps: Sequence[ResultStep], depends_on: dict[str, list[str]], verifications: set[str]) -> list[str]:
    """The steps nothing depends on (verification steps aside), in plan order."""
    work = [s for s in steps if s.key not in verifications] or list(steps)
    needed = {dep for s in work for dep in depends_on.get(s.key, ())}
    return [s.key for s in sorted(work, key=lambda s: s.idx) if s.key not in needed]


def conclude(
    steps: Sequence[ResultStep],
    depends_on: dict[str, list[str]],
    verifications: set[str],
    reason: str | None,
    finished: Finished | None = None,
) -> RunResult:
    """The result of a run whose steps ended as ``steps`` say, for the reason the run ended with."""
    by_key = {s.key: s for s in steps}
    ordered = sorted(steps, key=lambda s: s.idx)
    finals = final_keys(ordered, depends_on, verifications)
    given = finished is not None and finished.has_answer
    answer = finished.answer if given and finished else _answer([by_key[k] for k in finals])
    evidence = _evidence(ordered, verifications)
    summary = _summary(ordered, evidence, reason)
    return RunResult(
        answer,
        summary,
        evidence,
        finished.by if finished else None,
        finished.reason if finished else None,
    )


def _answer(finals: list[ResultStep]) -> Any:
    done = [s for s in finals if _status(s) == "succeeded"]
    if not done:
        return None
    if len(finals) == 1:
        return done[0].output
    return {s.key: s.output for s in done}


def _evidence(steps: list[ResultStep], verifications: set[str]) -> dict[str, Any]:
    def keys(status: str) -> list[str]:
        return [s.key for s in steps if _status(s) == status]

    return {
        "failed": keys("failed"),
        "skipped": keys("skipped"),
        "rejected": keys("rejected"),
        "never_ran": [s.key for s in steps if s.attempts == 0 and _status(s) != "succeeded"],
        "verifications": {s.key: _verdict(_status(s)) for s in steps if s.key in verifications},
    }


def _verdict(status: str) -> str:
    return {"succeeded": "passed", "failed": "failed"}.get(status, f"not run ({status})")


def _summary(steps: list[ResultStep], evidence: dict[str, Any], reason: str | None) -> str:
    """Why it ended (when it says), how many steps succeeded, what each verification found."""
    done = sum(1 for s in steps if _status(s) == "succeeded")
    parts = [reason] if reason else []
    parts.append(f"{done} of {len(steps)} step{'s' if len(steps) != 1 else ''} succeeded")
    parts.extend(f'verification "{key}" {verdict}' for key, verdict in evidence["verifications"].items())
    return "; ".join(parts)


def _status(step: ResultStep) -> str:
    return str(getattr(step.status, "value", step.status))


def plan_shape(specs: Iterable[Any]) -> tuple[dict[str, list[str]], set[str]]:
    """(dependencies by key, verification keys) of a plan's step specs."""
    specs = list(specs)
    return {s.key: list(s.depends_on) for s in specs}, {s.key for s in specs if s.type == "verification"}
