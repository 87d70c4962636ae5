"""Execution spans as OpenTelemetry (OTLP/JSON), for any tracing backend.

One trace per run: a root span for the run, a child span per step attempt,
and under each attempt a span per model call (``chat``) and per tool call
(``execute_tool``), with the GenAI semantic-convention names. Rejected and
denied tool calls have spans too (status error, the reason as message): the
attempt waited for that answer.
"""

from __future__ import annotations

import hashlib
from typing import Any

from core.store.records import RunRecord, SpanRecord

STATUS_OK, STATUS_ERROR = 1, 2
SPAN_KIND_INTERNAL = 1


def _hex_id(text: str, length: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


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
    trace_id = _hex_id(f"loopdeck-run/{run.id}", 32)
    root_id = _hex_id(f"loopdeck-run/{run.id}/root", 16)
    end = run.ended_at or max((s.ended_at for s in spans), default=run.created_at)
    out_spans = [
        {
            "traceId": trace_id,
            "spanId": root_id,
            "name": f"run {run.goal or run.id}",
            "kind": SPAN_KIND_INTERNAL,
            "startTimeUnixNano": _nanos(run.created_at),
            "endTimeUnixNano": _nanos(end),
            "attributes": [_attr("loopdeck.run_id", run.id), _attr("loopdeck.run_status", run.status.value)],
            "status": {"code": STATUS_OK if run.status == "succeeded" else STATUS_ERROR},
        }
    ]
    attempts = {(s.step_key, s.attempt) for s in spans if s.kind == "attempt"}
    for n, s in enumerate(spans):
        if s.kind == "attempt":
            span_id = _attempt_id(run.id, s.step_key, s.attempt)
            parent = root_id
        else:  # a chat turn or a tool call: a child of its attempt (of the run, if the attempt left no span)
            span_id = _hex_id(f"{run.id}/{s.step_key}/{s.attempt}/{s.kind}/{s.turn}/{s.name}/{n}", 16)
            known = (s.step_key, s.attempt) in attempts
            parent = _attempt_id(run.id, s.step_key, s.attempt) if known else root_id
        out_spans.append(
            {
                "traceId": trace_id,
                "spanId": span_id,
                "parentSpanId": parent,
                "name": _span_name(s),
                "kind": SPAN_KIND_INTERNAL,
                "startTimeUnixNano": _nanos(s.started_at),
                "endTimeUnixNano": _nanos(s.ended_at),
                "attributes": [_attr(k, v) for k, v in _attributes(run.id, s).items()],
                "status": _status(s),
            }
        )
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [_attr("service.name", "loopdeck")]},
                "scopeSpans": [{"scope": {"name": "loopdeck"}, "spans": out_spans}],
            }
        ]
    }


def _attempt_id(run_id: str, key: str, attempt: int) -> str:
    return _hex_id(f"{run_id}/{key}/{attempt}", 16)


def _span_name(s: SpanRecord) -> str:
    """GenAI span names (``chat MODEL``, ``execute_tool TOOL``); an attempt is ``STEP #N``."""
    if s.kind == "chat":
        return f"chat {s.name}"
    if s.kind == "tool":
        return f"execute_tool {s.name}"
    return f"{s.step_key} #{s.attempt}"


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
    if s.kind != "tool":
        attributes["gen_ai.usage.input_tokens"] = s.prompt_tokens
        attributes["gen_ai.usage.output_tokens"] = s.completion_tokens
    if s.kind == "tool":
        attributes["gen_ai.operation.name"] = "execute_tool"
    attributes.update(s.attributes)
    return attributes


def _status(s: SpanRecord) -> dict[str, Any]:
    status: dict[str, Any] = {"code": STATUS_OK if s.status == "succeeded" else STATUS_ERROR}
    if s.error:
        status["message"] = s.error
    return status
