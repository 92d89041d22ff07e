"""Recipe: ship orion's traces to an OpenTelemetry collector (OTLP over HTTP, protobuf).

Turn it on with configuration only:

    ORION_OTLP_ENDPOINT=http://127.0.0.1:4318/v1/traces   # a collector, Jaeger, Tempo, Honeycomb...
    ORION_SERVICE=orion                                    # service.name on every span (default orion)

and install the recipe's dependencies (they are this recipe's, not the app's: requirements.txt
does not carry them, and with ORION_OTLP_ENDPOINT unset this module is never imported):

    opentelemetry-sdk==1.45.2
    opentelemetry-exporter-otlp-proto-http==1.45.2

(which bring opentelemetry-api and -proto 1.45.2, opentelemetry-exporter-otlp-proto-common
1.45.2, opentelemetry-semantic-conventions 0.66b2, protobuf 7.36.2, requests 2.34.2 and
googleapis-common-protos 1.76.0). A collector that needs a key takes it from the standard
``OTEL_EXPORTER_OTLP_HEADERS`` variable (``x-honeycomb-team=...``), which the exporter reads.

How it fits: belt.trace calls ``on_trace(spans)`` when a request's trace ends (and for a span
that outlived it). Each orion span becomes the SDK's ``ReadableSpan`` with the *same* trace
and span ids (so a trace id in a canonical line finds the trace in the collector), and goes to
the SDK's ``BatchSpanProcessor``: it queues (2,048 spans, dropping beyond rather than growing),
batches and exports from its own worker, which under gunicorn's gevent worker is a greenlet on
cooperative sockets, so the hub never waits on the collector. Shutdown flushes what is queued.
A request that arrived with a ``traceparent`` header continues the caller's trace.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from app.belt import trace

log = logging.getLogger("orion.otlp")


def install(
    endpoint: str, *, service: str = "orion", exporter: Any = None, headers: Mapping[str, str] | None = None
) -> Callable[[], None]:
    """Export every finished trace to ``endpoint``; returns the shutdown call (flushes)."""
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # type: ignore[import-not-found]
        from opentelemetry.sdk.resources import Resource  # type: ignore[import-not-found]
        from opentelemetry.sdk.trace.export import BatchSpanProcessor  # type: ignore[import-not-found]
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope  # type: ignore[import-not-found]
    except ImportError as exc:
        raise SystemExit(
            f"ORION_OTLP_ENDPOINT={endpoint!r} needs the OpenTelemetry SDK ({exc.name} is missing): "
            "pip install opentelemetry-sdk==1.45.2 opentelemetry-exporter-otlp-proto-http==1.45.2, "
            "or unset ORION_OTLP_ENDPOINT."
        ) from None
    exporter = exporter or OTLPSpanExporter(endpoint=endpoint, headers=dict(headers) if headers else None, timeout=5)
    processor = BatchSpanProcessor(exporter, schedule_delay_millis=1000)
    resource = Resource.create({"service.name": service})
    scope = InstrumentationScope("orion.belt.trace")

    def on_trace(spans: tuple[trace.SpanRecord, ...]) -> None:
        for span in spans:
            processor.on_end(convert(span, resource, scope))

    remove = trace.on_trace(on_trace)
    log.info("traces go to the OpenTelemetry collector at %s as service %r", endpoint, service)

    def shutdown() -> None:
        # Export what is queued, but give a collector that is down 2 s, not the exporter's
        # retries (up to its timeout): the worker must exit inside gunicorn's graceful_timeout.
        remove()
        processor.force_flush(timeout_millis=2000)
        exporter.shutdown()
        processor.shutdown()

    return shutdown


def convert(span: trace.SpanRecord, resource: Any, scope: Any) -> Any:
    """One orion span as the SDK's ReadableSpan (same ids, nanosecond times)."""
    from opentelemetry.sdk.trace import ReadableSpan  # type: ignore[import-not-found]
    from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags  # type: ignore[import-not-found]

    flags = TraceFlags(TraceFlags.SAMPLED)
    context = SpanContext(int(span.trace_id, 16), int(span.span_id, 16), is_remote=False, trace_flags=flags)
    parent = (
        SpanContext(int(span.trace_id, 16), int(span.parent_id, 16), is_remote=False, trace_flags=flags)
        if span.parent_id
        else None
    )
    is_request = span.attribute("http.request.method") is not None
    start = int(span.start * 1e9)
    return ReadableSpan(
        name=span.name,
        context=context,
        parent=parent,
        resource=resource,
        attributes={key: _value(value) for key, value in span.attributes},
        kind=SpanKind.SERVER if is_request else SpanKind.INTERNAL,
        status=Status(StatusCode.ERROR, span.error) if span.status == "error" else Status(StatusCode.UNSET),
        start_time=start,
        end_time=start + int(span.duration * 1e9),
        instrumentation_scope=scope,
    )


def _value(value: Any) -> Any:
    """OTLP attribute values are str, bool, int, float (or lists of one of them)."""
    if isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, (str, bool, int, float)) for v in value):
        return list(value)
    return str(value)
