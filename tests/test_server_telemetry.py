"""Telemetry: with OpenTelemetry on, RPCs are traced and the codec metrics recorded; off by
default, with no interceptor. Server configuration comes from flags and RVQSTREAM_* variables."""

from __future__ import annotations

import argparse

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from rvqstream.client import Client
from rvqstream.server import ServerConfig
from rvqstream.server.telemetry import Telemetry


def metric_points(reader: InMemoryMetricReader) -> dict[str, list]:
    out: dict[str, list] = {}
    for rm in reader.get_metrics_data().resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                out.setdefault(m.name, []).extend(m.data.data_points)
    return out


def test_metrics_and_traces_are_recorded(server_config, registry, tmp_path):
    from conftest import ServerThread

    reader = InMemoryMetricReader()
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    telemetry = Telemetry(True, MeterProvider(metric_readers=[reader]), tracer_provider)
    srv = ServerThread(server_config, registry, telemetry).start()
    try:
        with Client(srv.target, cache_dir=tmp_path / "cache") as client:
            batches = list(client.encode_stream(["Metrics count frames, bytes and latency. " * 3]))
            decoder = client.decoder(batches[0].model_id)
            frames = sum(decoder.push(b.data).frames for b in batches)
            client.compress("a unary call")
            client.publish("metered", ["one", "two"])
    finally:
        srv.close()
    points = metric_points(reader)
    assert sum(p.value for p in points["rvqstream.frames"]) == frames
    assert sum(p.value for p in points["rvqstream.bytes_in"]) > 0
    assert sum(p.value for p in points["rvqstream.bytes_out"]) > 0
    assert sum(p.count for p in points["rvqstream.frame_latency"]) >= 1
    assert sum(p.count for p in points["rvqstream.batch_size"]) >= 1
    assert sum(p.count for p in points["rvqstream.compression_ratio"]) == 3
    names = {s.name for s in spans.get_finished_spans()}
    assert {"/rvqstream.v1.CodecService/EncodeStream", "/rvqstream.v1.CodecService/Compress",
            "/rvqstream.v1.ChannelService/Publish"} <= names


def test_telemetry_is_off_by_default():
    telemetry = Telemetry(ServerConfig().telemetry)
    assert not telemetry.enabled and telemetry.interceptors() == []


def test_config_from_env_and_flags(tmp_path):
    env = {"RVQSTREAM_LISTEN": "0.0.0.0:7000", "RVQSTREAM_MAX_DELAY_MS": "75",
           "RVQSTREAM_TELEMETRY": "on", "RVQSTREAM_DATA_DIR": str(tmp_path)}
    cfg = ServerConfig.from_env(env)
    assert (cfg.listen, cfg.max_delay_ms, cfg.telemetry, cfg.data_dir) == ("0.0.0.0:7000", 75, True, tmp_path)
    parser = argparse.ArgumentParser()
    ServerConfig.add_arguments(parser)
    args = parser.parse_args(["--max-delay-ms", "30", "--no-telemetry", "--workers", "1"])
    cfg = ServerConfig.from_args(args, env)
    assert (cfg.listen, cfg.max_delay_ms, cfg.telemetry, cfg.workers) == ("0.0.0.0:7000", 30, False, 1)
    assert ServerConfig.from_env({}) == ServerConfig()
    with pytest.raises(SystemExit, match="RVQSTREAM_WORKERS"):
        ServerConfig.from_env({"RVQSTREAM_WORKERS": "many"})


def test_missed_budgets_degrade_frames_count_them_and_lose_no_text(server_config, registry, tmp_path):
    """A 1 ms budget is below the scheduler's own queue delay: every frame must degrade (to
    fallback form, in the exact tier), be counted, and the text must still decode exactly."""
    from conftest import ServerThread

    reader = InMemoryMetricReader()
    srv = ServerThread(server_config, registry, Telemetry(True, MeterProvider(metric_readers=[reader]),
                                                          TracerProvider())).start()
    text = "Every word arrives late for a one-millisecond budget, yet none is dropped. " * 2
    try:
        with Client(srv.target, cache_dir=tmp_path / "cache") as client:
            batches = list(client.encode_stream(text.split(" "), max_delay_ms=1))
            decoder = client.decoder(batches[0].model_id)
            out = [decoder.push(b.data) for b in batches]
    finally:
        srv.close()
    assert "".join(d.text for d in out) == "".join(text.split(" "))
    frames = sum(d.frames for d in out)
    assert frames and all(d.fallback_frames == d.frames for d in out)   # no model work at all
    points = metric_points(reader)
    assert sum(p.value for p in points["rvqstream.degraded_frames"]) == frames
    assert sum(p.value for p in points["rvqstream.deadline_misses"]) >= 1
