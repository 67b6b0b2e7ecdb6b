"""A throwaway redis-server (tests, ``emostream bench bus``): a free loopback port, no persistence, and
one clear line when redis-server is missing or does not start."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from emostream.errors import UserError


def free_port() -> int:
    """A loopback TCP port nothing listens on (right now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis(port: int, *extra: str, workdir: str | None = None) -> subprocess.Popen[bytes]:
    """Start redis-server on 127.0.0.1:``port`` (no persistence) and wait until it answers."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise UserError("redis-server is not installed: `apt-get install redis-server` (or pass --redis URL)")
    cmd = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", *extra]
    if workdir:
        cmd += ["--dir", workdir]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(host="127.0.0.1", port=port, password=_password(extra))
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            client.close()
            return proc
        except redis.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise UserError(f"redis-server did not start on 127.0.0.1:{port}") from None
            time.sleep(0.02)


@contextmanager
def redis_server(*extra: str) -> Iterator[str]:
    """A private redis-server for the block; yields its URL, stops it on exit."""
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        proc = start_redis(port, *extra, workdir=tmp)
        try:
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(10)


def _password(extra: tuple[str, ...]) -> str | None:
    return extra[extra.index("--requirepass") + 1] if "--requirepass" in extra else None
