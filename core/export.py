"""Execution spans as OpenTelemetry (OTLP/JSON), for any tracing backend.

One trace per run: a root span for the run, a child span per step attempt,
and under each attempt a span per model call (``chat``) and per tool call
(``execute_tool``), with the GenAI semantic-convention names. Rejected and
denied tool calls have spans too (status error, the reason as message): the
attempt waited for that answer.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from core.store.records import RunRecord, SpanRecord

STATUS_OK, STATUS_ERROR = 1, 2
SPAN_KIND_INTERNAL = 1


@dataclass(frozen=True, slots=True)
class TraceSpan:
    """A span as any trace backend takes it: the ids (hex), names, times and typed attributes.

    Built by the same rules for ``export`` (from the store) and for live traces (as spans end),
    so both give the same ids: a span sent live and exported later is the same span.
    """

    trace_id: str  # 32 hex digits: one trace per run
    span_id: str  # 16 hex digits
    parent_id: str | None
    name: str
    start: float  # seconds since the epoch
    end: float
    attributes: dict[str, Any]
    ok: bool
    message: str | None = None


def _hex_id(text: str, length: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def trace_id(run_id: str) -> str:
    return _hex_id(f"loopdeck-run/{run_id}", 32)


def root_id(run_id: str) -> str:
    return _hex_id(f"loopdeck-run/{run_id}/root", 16)


def attempt_id(run_id: str, key: str, attempt: int) -> str:
    return _hex_id(f"{run_id}/{key}/{attempt}", 16)


def root_span(run_id: str, goal: str | None, status: str, created_at: float, ended_at: float) -> TraceSpan:
    """The run's own span, the root of its trace."""
    attributes = {"loopdeck.run_id": run_id, "loopdeck.run_status": status}
    return TraceSpan(
        trace_id(run_id), root_id(run_id), None, f"run {goal or run_id}", created_at, ended_at, attributes,
        status == "succeeded",
    )  # fmt: skip


def step_span(run_id: str, s: SpanRecord, attempt_known: bool = True) -> TraceSpan:
    """An attempt's span (under the run's), or a model call's or tool call's (under its attempt's, unless
    ``attempt_known`` is False: the attempt left no span, and the run's stands in)."""
    if s.kind == "attempt":
        span_id, parent = attempt_id(run_id, s.step_key, s.attempt), root_id(run_id)
    else:
        which = s.attributes.get("loopdeck.tool_call_id") if s.kind == "tool" else s.turn
        span_id = _hex_id(f"{run_id}/{s.step_key}/{s.attempt}/{s.kind}/{which}", 16)
        parent = attempt_id(run_id, s.step_key, s.attempt) if attempt_known else root_id(run_id)
    return TraceSpan(
        trace_id(run_id), span_id, parent, _span_name(s), s.started_at, s.ended_at, _attributes(run_id, s),
        s.status == "succeeded", s.error,
    )  # fmt: skip


def _nanos(ts: float | None) -> str:
    return str(round((ts or 0) * 1e9))


def _attr(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    if isinstance(value, float):
        return {"key": key, "value": {"doubleValue": value}}
    return {"key": key, "value": {"stringValue": str(value)}}


def otlp_json(run: RunRecord, spans: list[SpanRecord]) -> dict[str, Any]:
    """An OTLP ``ExportTraceServiceRequest`` in its JSON encoding."""
    end = run.ended_at or max((s.ended_at for s in spans), default=run.created_at)
    attempts = {(s.step_key, s.attempt) for s in spans if s.kind == "attempt"}
    out = [root_span(run.id, run.goal, run.status.value, run.created_at, end)]
    out += [step_span(run.id, s, (s.step_key, s.attempt) in attempts) for s in spans]
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [_attr("service.name", "loopdeck")]},
                "scopeSpans": [{"scope": {"name": "loopdeck"}, "spans": [_otlp(t) for t in out]}],
            }
        ]
    }


def _otlp(t: TraceSpan) -> dict[str, Any]:
    status: dict[str, Any] = {"code": STATUS_OK if t.ok else STATUS_ERROR}
    if t.message:
        status["message"] = t.message
    span = {
        "traceId": t.trace_id,
        "spanId": t.span_id,
        "parentSpanId": t.parent_id,
        "name": t.name,
        "kind": SPAN_KIND_INTERNAL,
        "startTimeUnixNano": _nanos(t.start),
        "endTimeUnixNano": _nanos(t.end),
        "attributes": [_attr(k, v) for k, v in t.attributes.items()],
        "status": status,
    }
    if t.parent_id is None:
        del span["parentSpanId"]
    return span


def _span_name(s: SpanRecord) -> str:
    """GenAI span names: ``invoke_agent AGENT`` (an attempt: its step and number are attributes),
    ``chat MODEL``, ``execute_tool TOOL``."""
    if s.kind == "chat":
        return f"chat {s.name}"
    if s.kind == "tool":
        return f"execute_tool {s.name}"
    return f"invoke_agent {s.agent}"


def _attributes(run_id: str, s: SpanRecord) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "loopdeck.run_id": run_id,
        "loopdeck.step_key": s.step_key,
        "loopdeck.attempt": s.attempt,
        "loopdeck.agent": s.agent,
        "loopdeck.status": s.status,
    }
    if s.turn is not None:
        attributes["loopdeck.turn"] = s.turn
    if s.kind == "attempt":
        attributes["gen_ai.operation.name"] = "invoke_agent"
        attributes["gen_ai.agent.name"] = s.agent
    if s.kind == "tool":
        attributes["gen_ai.operation.name"] = "execute_tool"
    else:
        attributes["gen_ai.usage.input_tokens"] = s.prompt_tokens
        attributes["gen_ai.usage.output_tokens"] = s.completion_tokens
    if s.cost_usd is not None:
        attributes["loopdeck.cost_usd"] = s.cost_usd
    attributes.update(s.attributes)
    return attributes
