"""Resilience fixtures: real redis-servers this folder starts itself (AOF on, password, restartable).

Each test here reproduces one numbered finding of issue 13 against a real redis-server (and the memory
bus where the behaviour exists there) and asserts that nothing is lost silently.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from emostream.runtime import metrics
from emostream.testing.redis_server import free_port, start_redis


@dataclass
class Redis:
    """A redis-server with AOF (``appendfsync everysec``) in ``dir``, restartable on the same port."""

    port: int
    dir: Path
    password: str = ""
    proc: subprocess.Popen[bytes] | None = None
    extra: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = ["--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(self.dir), *self.extra]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = start_redis(self.port, *args)

    def kill(self) -> None:
        """kill -9: no shutdown save, only what AOF already fsynced survives."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[Redis]:
    r = Redis(port=free_port(), dir=tmp_path)
    r.start()
    yield r
    r.stop()


def counter(metric: object, *labels: str) -> float:
    """Current value of a labelled Prometheus counter."""
    return float(metric.labels(*labels)._value.get())  # type: ignore[attr-defined]


def refused(stream: str, reason: str) -> float:
    return counter(metrics.REFUSED, stream, reason)


def emostream(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """A real `emostream ...` child process (this worktree's code), stdout/stderr captured."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "emostream", *args],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def wait_for(predicate: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.05)
