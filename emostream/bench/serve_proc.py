"""An ``emostream serve`` child process for benches: its own interpreter (and GIL), so the publishers a
bench runs in its own process do not slow the server's event loop and the figures are the server's."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from emostream.errors import UserError
from emostream.testing.redis_server import free_port


@dataclass
class ServeProcess:
    proc: subprocess.Popen[bytes]
    url: str
    log: str

    async def stop(self, timeout_s: float = 60) -> int:
        """SIGTERM (the graceful drain) and its exit status; the log is kept only when it failed."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            rc = await asyncio.to_thread(self.proc.wait, timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = await asyncio.to_thread(self.proc.wait)
        if rc == 0:
            with contextlib.suppress(OSError):
                os.unlink(self.log)
        else:
            print(f"emostream serve exited with {rc}: see {self.log}", file=sys.stderr)
        return rc


def _spawn(cmd: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    fd, log = tempfile.mkstemp(prefix="emostream-serve-", suffix=".log")
    with os.fdopen(fd, "wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env), log


async def start_serve(
    secret: str,
    config: str | None = None,
    ready_s: float = 180,
    env: dict[str, str] | None = None,
    redis: str | None = None,
) -> ServeProcess:
    """``emostream serve`` on a free loopback port, once ``/readyz`` is 200: embedded bus and every
    stage, or with ``redis`` only the API and the call ingest (the stages are workers elsewhere)."""
    port = free_port()
    cmd = [sys.executable, "-m", "emostream"] + (["--config", config] if config else [])
    cmd += ["serve", "--host", "127.0.0.1", "--port", str(port)] + (["--redis", redis] if redis else [])
    bus = redis or "memory://"
    full = {**os.environ, "EMOSTREAM_API_SECRET": secret, "EMOSTREAM_BUS_URL": bus, **(env or {})}
    proc, log = _spawn(cmd, full)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + ready_s
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(url + "/readyz", timeout=aiohttp.ClientTimeout(total=1)) as r:
                    if r.status == 200:
                        return ServeProcess(proc, url, log)
            except (aiohttp.ClientError, TimeoutError):
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                why = (
                    f"exited with {proc.wait()}"
                    if proc.returncode is not None
                    else f"not ready in {ready_s:.0f} s"
                )
                raise UserError(f"emostream serve {why} (last line: {_last_line(log)!r}): see {log}")
            await asyncio.sleep(0.2)


@dataclass
class WorkerProcess:
    name: str
    proc: subprocess.Popen[bytes]
    log: str
    metrics_url: str


async def start_workers(
    names: tuple[str, ...], redis: str, config: str | None = None, ready_s: float = 180
) -> list[WorkerProcess]:
    """One ``emostream worker NAME --redis URL`` process per stage (each its own interpreter), returned
    once every one has loaded its models (logged ``stage started``)."""
    workers = []
    for name in names:
        port = free_port()
        cmd = [sys.executable, "-m", "emostream"] + (["--config", config] if config else [])
        cmd += ["worker", name, "--redis", redis, "--metrics-port", str(port)]
        proc, log = _spawn(cmd, {**os.environ, "EMOSTREAM_BUS_URL": redis})
        workers.append(WorkerProcess(name, proc, log, f"http://127.0.0.1:{port}"))
    deadline = time.monotonic() + ready_s
    waiting = list(workers)
    while waiting:
        for w in list(waiting):
            if w.proc.poll() is not None:
                await stop_workers(workers)
                raise UserError(f"emostream worker {w.name} exited with {w.proc.returncode}: see {w.log}")
            if b"stage started" in await asyncio.to_thread(Path(w.log).read_bytes):
                waiting.remove(w)
        if waiting and time.monotonic() > deadline:
            await stop_workers(workers)
            raise UserError(
                f"emostream worker {waiting[0].name} not ready within {ready_s:.0f} s: see {waiting[0].log}"
            )
        await asyncio.sleep(0.2)
    return workers


async def stop_workers(workers: list[WorkerProcess], timeout_s: float = 60) -> None:
    """SIGTERM every worker (they drain), then wait; logs are kept only for a failed one."""
    for w in workers:
        if w.proc.poll() is None:
            w.proc.terminate()
    for w in workers:
        try:
            rc = await asyncio.to_thread(w.proc.wait, timeout_s)
        except subprocess.TimeoutExpired:
            w.proc.kill()
            rc = await asyncio.to_thread(w.proc.wait)
        if rc == 0:
            with contextlib.suppress(OSError):
                os.unlink(w.log)
        else:
            print(f"emostream worker {w.name} exited with {rc}: see {w.log}", file=sys.stderr)


def _last_line(log: str) -> str:
    try:
        lines = Path(log).read_text(errors="replace").strip().splitlines()
    except OSError as exc:
        return f"log unreadable: {exc}"
    return lines[-1][-300:] if lines else "(empty)"
