"""Execution spans as OpenTelemetry (OTLP/JSON), for any tracing backend.

One trace per run: a root span for the run and a child span per step
attempt, with token usage under the GenAI semantic-convention names.
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
    for s in spans:
        status: dict[str, Any] = {"code": STATUS_OK if s.status == "succeeded" else STATUS_ERROR}
        if s.error:
            status["message"] = s.error
        out_spans.append(
            {
                "traceId": trace_id,
                "spanId": _hex_id(f"{run.id}/{s.step_key}/{s.attempt}", 16),
                "parentSpanId": root_id,
                "name": f"{s.step_key} #{s.attempt}",
                "kind": SPAN_KIND_INTERNAL,
                "startTimeUnixNano": _nanos(s.started_at),
                "endTimeUnixNano": _nanos(s.ended_at),
                "attributes": [
                    _attr("loopdeck.run_id", run.id),
                    _attr("loopdeck.step_key", s.step_key),
                    _attr("loopdeck.attempt", s.attempt),
                    _attr("loopdeck.agent", s.agent),
                    _attr("loopdeck.status", s.status),
                    _attr("gen_ai.usage.input_tokens", s.prompt_tokens),
                    _attr("gen_ai.usage.output_tokens", s.completion_tokens),
                ],
                "status": status,
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
