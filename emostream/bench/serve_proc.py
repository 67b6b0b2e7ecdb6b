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
    secret: str, config: str | None = None, ready_s: float = 180, env: dict[str, str] | None = None
) -> ServeProcess:
    """``emostream serve`` (embedded bus, every stage) on a free loopback port, once ``/readyz`` is 200."""
    port = free_port()
    cmd = [sys.executable, "-m", "emostream"] + (["--config", config] if config else [])
    cmd += ["serve", "--host", "127.0.0.1", "--port", str(port)]
    full = {**os.environ, "EMOSTREAM_API_SECRET": secret, "EMOSTREAM_BUS_URL": "memory://", **(env or {})}
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
                raise UserError(f"emostream serve did not become ready within {ready_s:.0f} s: see {log}")
            await asyncio.sleep(0.2)
