"""OpenTelemetry for the server: traces through the gRPC aio interceptor, metrics through the SDK.

Off by default: then the meter is the API's no-op meter and no interceptor is installed. On, the
exporters are the ones the standard variables name (``OTEL_TRACES_EXPORTER``,
``OTEL_METRICS_EXPORTER``: otlp (default), console, none; endpoints from ``OTEL_EXPORTER_OTLP_*``).
"""

from __future__ import annotations

import importlib.metadata
import os

from opentelemetry import metrics, trace
from opentelemetry.metrics import NoOpMeterProvider

METER_NAME = "rvqstream.server"


class Metrics:
    """The server's instruments (units in names: bytes, ms)."""

    def __init__(self, meter: metrics.Meter):
        self.frames = meter.create_counter("rvqstream.frames", unit="{frame}",
                                           description="frames emitted, by kind")
        self.bytes_in = meter.create_counter("rvqstream.bytes_in", unit="By",
                                             description="UTF-8 text bytes received")
        self.bytes_out = meter.create_counter("rvqstream.bytes_out", unit="By",
                                              description="compressed bytes produced (frame payloads, blobs)")
        self.compression_ratio = meter.create_histogram(
            "rvqstream.compression_ratio", unit="1", description="compressed / text bytes per message")
        self.frame_latency = meter.create_histogram(
            "rvqstream.frame_latency", unit="ms", description="first byte of a frame's text to its emission")
        self.batch_size = meter.create_histogram("rvqstream.batch_size", unit="{item}",
                                                 description="stream work items per scheduler batch")
        self.model_batch = meter.create_histogram("rvqstream.model_batch", unit="{item}",
                                                  description="stream work items run together in one model call")
        self.queue_depth = meter.create_up_down_counter("rvqstream.queue_depth", unit="{item}",
                                                        description="work items waiting in the scheduler")
        self.deadline_misses = meter.create_counter("rvqstream.deadline_misses", unit="{frame}",
                                                    description="frames emitted after their latency budget")
        self.degraded_frames = meter.create_counter(
            "rvqstream.degraded_frames", unit="{frame}",
            description="frames degraded (fewer stages or fallback) to meet the budget")
        self.fallback_frames = meter.create_counter("rvqstream.fallback_frames", unit="{frame}",
                                                    description="frames sent in fallback form")
        self.near_duplicates = meter.create_counter(
            "rvqstream.near_duplicates", unit="{message}",
            description="messages whose meaning repeats a recent message of their channel (flagged)")
        self.near_duplicates_dropped = meter.create_counter(
            "rvqstream.near_duplicates_dropped", unit="{message}",
            description="near-duplicate messages not stored, as their publisher asked")
        self.searches = meter.create_histogram("rvqstream.search_codes", unit="{code}",
                                               description="codes scored by one search")


class Telemetry:
    """Meter provider, tracer provider and the interceptors to install; ``enabled=False`` is free."""

    def __init__(self, enabled: bool = False, meter_provider=None, tracer_provider=None):
        self.enabled = enabled
        self._owned: list = []
        if enabled and meter_provider is None:
            meter_provider = self._own(_meter_provider())
        if enabled and tracer_provider is None:
            tracer_provider = self._own(_tracer_provider())
        self.meter_provider = meter_provider or NoOpMeterProvider()
        self.tracer_provider = tracer_provider
        self.metrics = Metrics(self.meter_provider.get_meter(METER_NAME))

    def _own(self, provider):
        self._owned.append(provider)
        return provider

    def interceptors(self) -> list:
        if not self.enabled:
            return []
        from opentelemetry.instrumentation.grpc import aio_server_interceptor

        return [aio_server_interceptor(tracer_provider=self.tracer_provider or trace.get_tracer_provider())]

    def shutdown(self) -> None:
        for provider in self._owned:
            provider.shutdown()


def _exporter(kind: str, group: str):
    """The exporter ``OTEL_<KIND>_EXPORTER`` names (entry points of the installed exporters)."""
    name = os.environ.get(f"OTEL_{kind}_EXPORTER", "otlp").split(",")[0].strip()
    if name == "none":
        return None
    found = importlib.metadata.entry_points(group=group, name=name)
    if not found:
        raise SystemExit(f"OTEL_{kind}_EXPORTER={name}: no such exporter installed")
    return next(iter(found)).load()()


def _meter_provider():
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    exporter = _exporter("METRICS", "opentelemetry_metrics_exporter")
    readers = [PeriodicExportingMetricReader(exporter)] if exporter else []
    return MeterProvider(metric_readers=readers)


def _tracer_provider():
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider()
    exporter = _exporter("TRACES", "opentelemetry_traces_exporter")
    if exporter:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider
