"""The container healthchecks answer what they claim: a real metrics endpoint and a real Redis."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, start_http_server

from emostream.healthcheck import check_api, check_worker
from emostream.testing.redis_server import free_port


def serve(registry: CollectorRegistry) -> int:
    port = free_port()
    start_http_server(port, addr="127.0.0.1", registry=registry)
    return port


def test_worker_is_healthy_only_once_it_consumes_and_the_bus_answers(redis_url: str) -> None:
    registry = CollectorRegistry()
    port = serve(registry)
    assert "has not started consuming" in check_worker("127.0.0.1", port, 2, redis_url)
    Gauge("emostream_consumer_lag", "lag", ["stage", "stream"], registry=registry).labels("asr", "x").set(0)
    assert check_worker("127.0.0.1", port, 2, redis_url) == ""
    gone = f"redis://:pw@127.0.0.1:{free_port()}/0"
    assert "unreachable" in check_worker("127.0.0.1", port, 2, gone)
    assert ":***@" in check_worker("127.0.0.1", port, 2, gone), "the password is redacted"


def test_nothing_listening_is_unhealthy() -> None:
    port = free_port()
    assert "unreachable" in check_worker("127.0.0.1", port, 1, "memory://")
    assert "unreachable" in check_api("127.0.0.1", port, 1)
