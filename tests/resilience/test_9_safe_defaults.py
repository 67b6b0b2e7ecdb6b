"""Issue 13 #9: safe by default. Documented Redis commands bind loopback; a worker warns loudly on a
Redis that takes no password and when its unauthenticated metrics listen beyond loopback.
"""

from __future__ import annotations

import re
import signal
import socket
from pathlib import Path

from emostream.testing.redis_server import free_port

from .conftest import Redis, emostream, wait_for

REPO = Path(__file__).resolve().parents[2]
OPEN = "REDIS ACCEPTS CLIENTS WITHOUT A PASSWORD"
METRICS = "metrics served beyond loopback without auth"


def _worker_log(url: str, metrics_host: str) -> str:
    port = free_port()
    env = {"EMOSTREAM_STAGE_METRICS_HOST": metrics_host, "EMOSTREAM_STAGE_LOG_FORMAT": "json"}
    proc = emostream("worker", "toy", "--redis", url, "--metrics-port", str(port), env=env)

    def serving() -> bool:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_for(serving, 60, "the worker's metrics endpoint")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()[-1500:]
    return err.decode()


def test_worker_warns_on_an_open_redis_and_on_public_metrics(aof_redis: Redis) -> None:
    text = _worker_log(aof_redis.url, "0.0.0.0")
    assert OPEN in text and METRICS in text
    assert '"level": "warning"' in text or '"level":"warning"' in text


def test_no_warning_with_a_password_and_loopback_metrics(tmp_path: Path) -> None:
    secured = Redis(port=free_port(), dir=tmp_path, password="s3cret-enough")
    secured.start()
    try:
        text = _worker_log(secured.url, "127.0.0.1")
    finally:
        secured.stop()
    assert OPEN not in text and METRICS not in text


def test_documented_redis_commands_bind_loopback_and_persist() -> None:
    docs = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    commands = [
        line
        for doc in docs
        for line in doc.read_text().splitlines()
        if re.search(r"\bredis-server\s+--", line)
    ]
    assert commands, "the docs show how to start redis-server"
    for line in commands:
        bind = re.search(r"--bind((?:\s+[^-\s]\S*)+)", line)
        assert bind and set(bind.group(1).split()) <= {"127.0.0.1", "::1"}, line  # loopback only
        assert "--requirepass" in line, line
        assert "--appendonly yes" in line, line
    compose = (REPO / "docker-compose.yml").read_text()
    assert '"--appendonly", "yes"' in compose and '"--appendfsync", "everysec"' in compose
    assert '"127.0.0.1:6379:6379"' in compose
