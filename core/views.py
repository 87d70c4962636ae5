"""JSON-ready views of runs: the objects ``show --json``, ``runs --json`` and the dashboard read.

Pure functions from typed records to plain dicts: the keys here are a
contract relied on by tools outside the repository (add keys freely, rename
none). Timestamps are ISO 8601 UTC with microseconds.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from core.model.context import ContextRules, Upstream, build_context
from core.model.events import Event, iso
from core.model.money import usd
from core.model.result import RunResult, conclude
from core.model.states import StepStatus
from core.store.records import (
    FeedbackRecord,
    PlanOutline,
    RunRecord,
    SpanRecord,
    StepRecord,
    ToolCallRecord,
    WorkerRecord,
    stored_policy,
)


def tokens(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt": prompt, "completion": completion, "total": prompt + completion}


def run_json(
    run: RunRecord, result: RunResult | None = None, unpriced: int = 0, driver: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The run; ``unpriced``: how many of its steps spent tokens whose price is not known; ``driver``: who drives
    it (``core.cluster.lease.describe_driver``)."""
    plan = run.plan or {}
    result = result or run.result
    return {
        "id": run.id,
        "goal": run.goal,
        "status": run.status.value,
        "reason": run.reason,
        "tokens": tokens(run.prompt_tokens, run.completion_tokens),
        "token_budget": run.token_budget,
        "cost_usd": run_cost(run.cost_usd, unpriced),
        "cost_budget_usd": run.cost_budget_usd,
        "deadline": iso(run.deadline) if run.status.value == "awaiting_plan_approval" else None,
        "unpriced_steps": unpriced,
        "profile": run.profile,
        "parent": {"run": run.parent, "step": run.parent_step} if run.parent else None,
        "created_at": iso(run.created_at),
        "ended_at": iso(run.ended_at),
        "created_by": run.created_by,
        "max_concurrency": stored_policy(plan).get("max_concurrency"),
        "lease": {"host": run.lease.host, "pid": run.lease.pid, "expires_at": iso(run.lease.until)}
        if run.lease
        else None,
        "driver": driver,
        "result": None if result is None else result.to_json(),
    }


def run_cost(known: float | None, unpriced: int) -> float | None:
    """A run's cost: what its priced steps cost; unknown (None) when none of its spending could be priced
    (or it was recorded before loopdeck priced anything)."""
    return None if known is None or (unpriced and not known) else usd(known)


def step_json(step: StepRecord, depends_on: list[str]) -> dict[str, Any]:
    return {
        "key": step.key,
        "title": step.title,
        "type": step.type,
        "agent": step.agent,
        "depends_on": depends_on,
        "status": step.status.value,
        "attempts": step.attempts,
        "input": step.input,
        "output": step.output,
        "error": step.error,
        "tokens": tokens(step.prompt_tokens, step.completion_tokens),
        "cost_usd": usd(step.cost_usd),
        "approved_by": step.approved_by,
        "deadline": iso(step.deadline) if step.status == StepStatus.WAITING_USER else None,
        "started_at": iso(step.started_at),
        "ended_at": iso(step.ended_at),
    }


def span_json(span: SpanRecord) -> dict[str, Any]:
    """A span as ``show --json`` prints it: an attempt's, or a chat turn's or tool call's inside one."""
    return {
        "kind": span.kind,
        "step": span.step_key,
        "attempt": span.attempt,
        "turn": span.turn,
        "name": span.name,
        "agent": span.agent,
        "status": span.status,
        "started_at": iso(span.started_at),
        "ended_at": iso(span.ended_at),
        "tokens": tokens(span.prompt_tokens, span.completion_tokens),
        "cost_usd": usd(span.cost_usd),
        "error": span.error,
        "attributes": span.attributes,
    }


def call_json(call: ToolCallRecord) -> dict[str, Any]:
    """A tool call as ``show --json`` and ``calls --json`` print it."""
    return {
        "id": call.id,
        "step": call.step_key,
        "attempt": call.attempt,
        "turn": call.turn,
        "tool": call.tool,
        "server": call.server,
        "arguments": call.arguments,
        "status": call.status.value,
        "result": call.result,
        "error": call.error,
        "decided_by": call.decided_by,
        "rule": call.rule,
        "reason": call.reason,
        "text": call.text,
        "created_at": iso(call.created_at),
        "updated_at": iso(call.updated_at),
        "deadline": iso(call.deadline) if call.status.value == "waiting_user" else None,
    }


def feedback_json(feedback: FeedbackRecord) -> dict[str, Any]:
    return {
        "step": feedback.step_key,
        "agent": feedback.agent,
        "rating": feedback.rating,
        "comment": feedback.comment,
        "category": feedback.category,
        "user": feedback.created_by,
        "created_at": iso(feedback.created_at),
    }


def worker_json(worker: WorkerRecord) -> dict[str, Any]:
    return {
        "name": worker.name,
        "host": worker.host,
        "pid": worker.pid,
        "started_at": iso(worker.started_at),
        "heartbeat_at": iso(worker.heartbeat_at),
        "stopped_at": iso(worker.stopped_at),
        "runs_claimed": worker.runs_claimed,
    }


def snapshot(
    run: RunRecord,
    steps: list[StepRecord],
    spans: list[SpanRecord] | None,
    feedback: list[FeedbackRecord],
    agents: dict[str, Any],
    events: list[Event] | None,
    calls: list[ToolCallRecord] | None = None,
    children: list[RunRecord] | None = None,
    driver: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``show --json`` object: run, plan, steps, spans, feedback, agents and events (spans and events
    only when given)."""
    plan = run.plan or {}
    depends_on = PlanOutline.of(plan).depends_on
    out: dict[str, Any] = {
        "run": run_json(run, result_of(run, steps), sum(1 for s in steps if s.cost_usd is None and s.tokens), driver),
        "plan": plan,
        "proposal": run.proposal,
        "steps": [step_json(s, list(depends_on.get(s.key, ()))) for s in steps],
    }
    if spans is not None:
        out["spans"] = [span_json(s) for s in spans]
    out["feedback"] = [feedback_json(f) for f in feedback]
    out["agents"] = agents
    out["tool_calls"] = [call_json(c) for c in calls or ()]
    out["run"]["children"] = [child_json(c) for c in children or ()]
    if events is not None:
        out["events"] = [e.to_json() for e in events]
    return out


def child_json(child: RunRecord) -> dict[str, Any]:
    """A child run as its parent lists it: which step it runs for, and how far it got."""
    return {
        "id": child.id,
        "step": child.parent_step,
        "status": child.status.value,
        "tokens": child.tokens,
        "cost_usd": child.cost_usd,
    }


def result_of(run: RunRecord, steps: list[StepRecord]) -> RunResult | None:
    """The run's recorded result; for a run that ended before loopdeck recorded results, worked out now."""
    if run.result is not None or not run.status.terminal:
        return run.result
    specs = (run.plan or {}).get("steps", [])
    depends_on = {s["key"]: list(s.get("depends_on") or ()) for s in specs}
    verifications = {s["key"] for s in specs if s.get("type") == "verification"}
    return conclude(steps, depends_on, verifications, run.reason)


def listing(
    runs: list[RunRecord],
    counts: dict[str, dict[str, int]],
    drivers: dict[str, dict[str, Any] | None] | None = None,
    waiting: dict[str, list[str]] | None = None,
) -> list[dict[str, Any]]:
    """Runs, newest first, with step progress, who drives them and what waits for an operator (the keys of
    waiting steps, ``tool NAME`` for waiting tool calls, ``plan review``); ``runs --json`` shows a subset."""
    out = []
    for r in runs:
        c = counts.get(r.id, {})
        out.append(
            {
                "id": r.id,
                "goal": r.goal,
                "status": r.status.value,
                "created_at": iso(r.created_at),
                "ended_at": iso(r.ended_at),
                "steps": sum(c.values()),
                "done": sum(n for s, n in c.items() if StepStatus(s).terminal),
                "tokens": r.tokens,
                "token_budget": r.token_budget,
                "cost_usd": r.cost_usd,
                "profile": (r.profile or {}).get("name"),  # the harness profile it was created with
                "parent": r.parent,  # the run whose sub_agent step it runs for
                "driver": (drivers or {}).get(r.id),
                "waiting_for": ["plan review"]
                if r.status.value == "awaiting_plan_approval"
                else (waiting or {}).get(r.id, []),
            }
        )
    return out


def step_context(policy: dict[str, Any], depends_on: Collection[str], steps: list[StepRecord]) -> list[dict[str, Any]]:
    """The context a step gets or got from its dependencies' outputs (``steps``: theirs), per the run's
    ``policy`` as its plan writes it."""
    deps = set(depends_on)
    upstream = [
        Upstream(s.key, s.title, s.type, s.output, s.ended_at or 0.0)
        for s in steps
        if s.key in deps and s.status == StepStatus.SUCCEEDED
    ]
    return build_context(ContextRules.of(policy), upstream)


def nested_runs(listed: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """A listing with each child run right under its parent (when both are listed), and its depth."""
    by_parent: dict[str | None, list[dict[str, Any]]] = {}
    ids = {r["id"] for r in listed}
    for r in listed:
        by_parent.setdefault(r.get("parent") if r.get("parent") in ids else None, []).append(r)
    out: list[tuple[int, dict[str, Any]]] = []

    def walk(parent: str | None, depth: int) -> None:
        for r in by_parent.get(parent, []):
            out.append((depth, r))
            walk(r["id"], depth + 1)

    walk(None, 0)
    return out
