"""Prometheus metrics on /metrics and structured log lines from the stage runtime."""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.request

import pytest

from emostream.bus import Bus
from emostream.log import JsonFormatter, KeyValueFormatter
from emostream.runtime.metrics import serve_metrics
from emostream.runtime.stage import run_stage
from emostream.testing.harness import SINK, collect, fast_settings, pings
from emostream.testing.redis_server import free_port
from emostream.testing.toy import relay, stream_of


def _metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name}{{{want}}} not in /metrics")


async def test_metrics_endpoint_counts_processed_lag_and_latency(bus: Bus) -> None:
    port = free_port()
    serve_metrics(port)
    stage_name = f"toy1-{bus.url.split(':')[0]}"
    stage = relay(1)
    stage.name = stage_name  # per instance: its own label set, so the other bus's run cannot interfere
    await bus.ensure_group(stream_of(0), stage_name, "0")
    await bus.ensure_group(stream_of(1), SINK, "0")
    await bus.publish_many(stream_of(0), [*pings(40), b"junk"])
    stop = asyncio.Event()
    task = asyncio.create_task(run_stage(stage, bus, fast_settings(bus.url), consumer="c", stop=stop))
    await collect(bus, stream_of(1), {f"m{i}" for i in range(40)}, settle_s=0)
    await asyncio.sleep(0.6)  # the lag gauge refreshes every 0.2 s
    body = await asyncio.to_thread(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read())
    stop.set()
    await task
    text = body.decode()
    labels = {"stage": stage_name, "stream": "toy.0"}
    assert _metric(text, "emostream_processed_total", **labels) == 40
    assert _metric(text, "emostream_handle_seconds_count", **labels) == 40
    assert _metric(text, "emostream_dead_lettered_total", **labels, reason="undecodable") == 1
    assert _metric(text, "emostream_consumer_lag", **labels) == 0
    assert "emostream_failed_total" in text


def test_log_lines_are_structured() -> None:
    record = logging.LogRecord(
        "emostream.runtime.stage", logging.WARNING, __file__, 1, "handler failed", None, None
    )
    record.stage, record.error = "asr", 'RuntimeError: bad "input"'
    kv = KeyValueFormatter().format(record)
    assert (
        kv.startswith("ts=") and ' level=warning logger=emostream.runtime.stage msg="handler failed" ' in kv
    )
    assert kv.endswith('stage=asr error="RuntimeError: bad \\"input\\""')
    doc = json.loads(JsonFormatter().format(record))
    assert doc["msg"] == "handler failed" and doc["stage"] == "asr" and doc["level"] == "warning"


def test_metrics_server_answers_metrics_and_healthz_only() -> None:
    import urllib.error

    port = free_port()
    server = serve_metrics(port)
    assert server is not None
    try:
        base = f"http://127.0.0.1:{port}"
        assert b"emostream_processed" in urllib.request.urlopen(f"{base}/metrics").read()
        assert urllib.request.urlopen(f"{base}/healthz").read() == b"ok\n"
        for path in ("/", "/favicon.ico", "/metricsx"):
            with pytest.raises(urllib.error.HTTPError) as info:
                urllib.request.urlopen(base + path)
            assert info.value.code == 404, path
    finally:
        server.shutdown()
        server.server_close()


def test_metrics_port_in_use_is_one_line() -> None:
    port = free_port()
    serve_metrics(port)
    with pytest.raises(
        Exception, match=rf"cannot serve metrics on 127.0.0.1:{port} .*pick a free --metrics-port"
    ):
        serve_metrics(port)


def test_exceptions_log_where_not_a_traceback() -> None:
    try:
        raise ValueError("boom")
    except ValueError as exc:
        record = logging.LogRecord(
            "emostream", logging.ERROR, __file__, 1, "failed", None, (ValueError, exc, exc.__traceback__)
        )
    line = KeyValueFormatter().format(record)
    assert "\n" not in line and 'error="ValueError: boom"' in line
    assert f"where={__file__}:" in line


async def test_worker_process_serves_metrics_and_json_logs(flush_redis: str) -> None:
    import signal

    from emostream.bus import open_bus
    from emostream.testing.harness import start_toy_worker as start_worker

    bus = open_bus(flush_redis)
    port = free_port()
    proc = start_worker(
        flush_redis,
        1,
        "metered",
        extra=("--metrics-port", str(port)),
        env={"EMOSTREAM_STAGE_LOG_FORMAT": "json"},
    )
    try:
        await bus.ensure_group(stream_of(1), SINK, "0")
        await bus.publish_many(stream_of(0), pings(25))
        await collect(bus, stream_of(1), {f"m{i}" for i in range(25)}, settle_s=0)
        url = f"http://127.0.0.1:{port}/metrics"
        text = (await asyncio.to_thread(lambda: urllib.request.urlopen(url).read())).decode()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.to_thread(proc.communicate, timeout=20)
        await bus.close()
    assert _metric(text, "emostream_processed_total", stage="toy1", stream="toy.0") == 25
    lines = [json.loads(line) for line in err.decode().splitlines()]
    open_redis = [e for e in lines if e["msg"].startswith("REDIS ACCEPTS CLIENTS WITHOUT A PASSWORD")]
    assert len(open_redis) == 1 and open_redis[0]["level"] == "warning"  # the test Redis has none
    lines = [e for e in lines if e not in open_redis]
    assert [e["msg"] for e in lines][:2] == ["worker starting", "stage started"]
    assert lines[0]["metrics"] == url  # the log says where /metrics listens
    assert lines[-1]["msg"] == "stage stopped" and lines[-1]["processed"] == 25
    assert {e["level"] for e in lines} == {"info"} and proc.returncode == 0
