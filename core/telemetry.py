"""Live traces: each span sent to an OpenTelemetry collector (OTLP/HTTP) as soon as it is durable.

On when ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT``
is set (the exporter reads them, and the other ``OTEL_EXPORTER_OTLP_*`` and
``OTEL_BSP_*`` settings, itself). opentelemetry-sdk's batch processor and
OTLP/HTTP exporter do the sending, in their own thread, so a collector that
is slow or down never slows or fails a run: what cannot be delivered is
dropped, counted and logged (``loopdeck.telemetry``), never retried past the
exporter's timeout. The spans are those ``export`` writes (``core.export``,
the same ids), built from the rows a commit wrote: an attempt's, each model
call's and tool call's, and the run's own when it ends. No prompt, answer or
argument text is ever in them.

The SDK is imported only when an endpoint is set: commands pay nothing otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from core._version import __version__
from core.export import TraceSpan, root_span, step_span
from core.store import SpanRecord, WriteBatch

log = logging.getLogger("loopdeck.telemetry")
ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
CLOSE_WAIT_S = 3.0  # at most this long, when a process stops, to deliver the spans still queued


class LiveTraces:
    """The spans of every run this process drives, sent as they end."""

    def __init__(self, endpoint: str, exporter: Any = None) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope

        logging.getLogger("opentelemetry").addHandler(logging.NullHandler())  # we say what failed, once
        self.where = _shown(endpoint)
        self._exporter = _Counting(exporter or OTLPSpanExporter(), self.where)
        self._processor = BatchSpanProcessor(self._exporter)  # type: ignore[arg-type]  # duck-typed: see _Counting
        self.handed = 0  # spans given to the processor
        self._closed = False
        service = os.environ.get("OTEL_SERVICE_NAME") or "loopdeck"
        self._resource = Resource.create({"service.name": service, "service.version": __version__})
        self._scope = InstrumentationScope("loopdeck", __version__)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> LiveTraces | None:
        endpoint = next((environ[name] for name in ENDPOINT_VARS if environ.get(name)), None)
        return cls(endpoint) if endpoint else None

    @property
    def delivered(self) -> int:
        return self._exporter.delivered

    def observer(self, run_id: str, goal: str | None, created_at: float) -> Callable[[WriteBatch], None]:
        """What a run's controller calls with each batch once it is durable: its spans go out."""

        ended = False

        def observe(batch: WriteBatch) -> None:
            nonlocal ended
            spans = [step_span(run_id, SpanRecord.from_row(row)) for row in batch.spans if row["run_id"] == run_id]
            for row in batch.runs:
                if not ended and row["b_id"] == run_id and row["ended_at"] is not None:
                    ended = True
                    spans.append(root_span(run_id, goal, row["status"], created_at, row["ended_at"]))
            self.send(spans)

        return observe

    def send(self, spans: Iterable[TraceSpan]) -> None:
        for span in spans:
            self.handed += 1
            self._processor.on_end(self._readable(span))

    def _readable(self, span: TraceSpan) -> Any:
        """The span as opentelemetry-sdk hands it to an exporter, with loopdeck's own ids."""
        from opentelemetry.sdk.trace import ReadableSpan
        from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

        trace, flags = int(span.trace_id, 16), TraceFlags(TraceFlags.SAMPLED)
        parent = None if span.parent_id is None else SpanContext(trace, int(span.parent_id, 16), False, flags)
        return ReadableSpan(
            span.name,
            context=SpanContext(trace, int(span.span_id, 16), False, flags),
            parent=parent,
            resource=self._resource,
            attributes={k: _scalar(v) for k, v in span.attributes.items()},
            kind=SpanKind.INTERNAL,
            status=Status(StatusCode.OK) if span.ok else Status(StatusCode.ERROR, span.message),
            start_time=round(span.start * 1e9),
            end_time=round(span.end * 1e9),
            instrumentation_scope=self._scope,
        )

    async def aclose(self) -> None:
        """Deliver what is queued (for at most ``CLOSE_WAIT_S``), then say what was lost, if anything."""
        if not self._closed:
            self._closed = True
            await asyncio.to_thread(self._close)

    def _close(self) -> None:
        self._exporter.closing = True  # from here on, only the summary below speaks
        closing = threading.Thread(target=self._processor.shutdown, name="loopdeck-traces-close", daemon=True)
        closing.start()
        closing.join(CLOSE_WAIT_S)
        if closing.is_alive():
            self._exporter.shutdown()  # ends the exporter's retries; its thread is a daemon
        lost = self.handed - self.delivered
        if lost:
            why = f": {self._exporter.last_error}" if self._exporter.last_error else ""
            log.warning("%d of %d spans were not delivered to %s%s", lost, self.handed, self.where, why)


class _Counting:
    """The OTLP exporter, counting what it delivered and telling (once) that it failed.

    A ``SpanExporter`` by its methods, not by subclassing: that would import the SDK with this module.
    """

    def __init__(self, inner: Any, where: str) -> None:
        self.inner, self.where = inner, where
        self.delivered = 0
        self.last_error: str | None = None
        self.closing = False

    def export(self, spans: Any) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        try:
            result = self.inner.export(spans)
        except Exception as exc:  # an exporter bug must not end the processor's thread
            result, self.last_error = SpanExportResult.FAILURE, f"{type(exc).__name__}: {exc}"
        if result == SpanExportResult.SUCCESS:
            self.delivered += len(spans)
        else:
            if self.last_error is None and not self.closing:
                log.warning("spans could not be delivered to %s; the run goes on without them", self.where)
            self.last_error = self.last_error or "the collector did not accept them"
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return bool(self.inner.force_flush(timeout_millis))


def _scalar(value: Any) -> bool | int | float | str:
    return value if isinstance(value, bool | int | float | str) else str(value)


def _shown(endpoint: str) -> str:
    """The collector as logs may name it: scheme, host and port (a URL may carry a secret)."""
    parts = urlsplit(endpoint)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}" if parts.hostname else "the OTLP endpoint"
