"""The processes a soak runs and hurts: docker-compose.yml's topology started by ``emostream up``'s
:mod:`emostream.localstack` (redis-server with AOF, ``emostream serve --redis``, one ``emostream
worker`` per stage replica), plus what the fault schedule does to them (kill -9 and restart, Redis
restart from its AOF, SIGSTOP/SIGCONT) and the RSS of each, sampled from ``/proc``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from emostream import healthcheck, localstack
from emostream.errors import UserError

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


def rss_mb(pid: int) -> float | None:
    """Resident set size of ``pid`` in MiB (None once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@dataclass
class SoakStack:
    """A started topology and a log of what was done to it."""

    stack: localstack.Stack
    secret: str
    rss: list[tuple[float, str, float]] = field(default_factory=list)
    """(wall second, process name, MiB)."""
    restarted_at: dict[str, float] = field(default_factory=dict)
    crashes: list[str] = field(default_factory=list)
    """Exits nobody asked for (restarted like compose's ``restart: unless-stopped``)."""
    _hurting: set[str] = field(default_factory=set)

    @property
    def api_url(self) -> str:
        return self.stack.api_url

    @property
    def redis_url(self) -> str:
        return self.stack.redis_url

    def procs(self) -> dict[str, localstack.Proc]:
        return {"redis": self.stack.redis, **{p.name: p for p in self.stack.procs}}

    def pid(self, name: str) -> int:
        popen = self.procs()[name].popen
        assert popen is not None
        return popen.pid

    async def ready(self, timeout_s: float = 600) -> None:
        """Until the api's /readyz and every worker's stage check pass (models loaded, groups made)."""
        deadline = time.monotonic() + timeout_s
        host_port = urlsplit(self.api_url)
        while True:
            why = healthcheck.check_api("127.0.0.1", host_port.port or 0, 2)
            for name, port in self.stack.metrics_ports.items():
                why = why or await asyncio.to_thread(
                    healthcheck.check_worker, "127.0.0.1", port, 2, self.redis_url
                )
                if why:
                    why = f"{name}: {why}"
            problem = self.stack.check()
            if problem:
                raise UserError(f"soak stack failed to start: {problem}")
            if not why:
                return
            if time.monotonic() > deadline:
                raise UserError(f"soak stack not ready after {timeout_s:.0f} s: {why}")
            await asyncio.sleep(1.0)

    def sample(self) -> None:
        now = time.time()
        for name in self.procs():
            mb = rss_mb(self.pid(name))
            if mb is not None:
                self.rss.append((now, name, mb))

    def watch(self) -> None:
        """Restart any process that exited on its own (recorded as a crash)."""
        for name, proc in self.procs().items():
            assert proc.popen is not None
            code = proc.popen.poll()
            if code is not None and name not in self._hurting and name != "redis":
                self.crashes.append(f"{name} exited {code} at {time.time():.0f}: {proc.tail(300)}")
                proc.start()
                self.restarted_at[name] = time.time()

    async def kill9(self, name: str) -> None:
        """kill -9 and start it again at once (compose's restart policy)."""
        proc = self.procs()[name]
        assert proc.popen is not None
        self._hurting.add(name)
        try:
            proc.popen.send_signal(signal.SIGKILL)
            await asyncio.to_thread(proc.popen.wait, 30)
            proc.start()
            proc.restarts += 1
            self.restarted_at[name] = time.time()
        finally:
            self._hurting.discard(name)

    async def restart_redis(self) -> None:
        """kill -9 of redis-server, then the same command again: it reloads its AOF."""
        await self.kill9("redis")
        parts = urlsplit(self.redis_url)
        await asyncio.to_thread(
            localstack._wait_redis, self.stack.redis, parts.port or 6379, parts.password or ""
        )

    async def pause(self, name: str, seconds: float) -> None:
        """SIGSTOP for ``seconds``, then SIGCONT (a hung worker that comes back)."""
        pid = self.pid(name)
        self._hurting.add(name)
        os.kill(pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(seconds)
        finally:
            os.kill(pid, signal.SIGCONT)
            self._hurting.discard(name)

    async def stall(self, others: list[int], seconds: float) -> None:
        """The whole host stops for ``seconds``: every process of the stack and ``others`` (the
        participants) SIGSTOPped together, then SIGCONTed together."""
        names = list(self.procs())
        pids = [self.pid(n) for n in names] + others
        self._hurting.update(names)
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(seconds)
        finally:
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGCONT)
            self._hurting.difference_update(names)

    def stop(self) -> dict[str, int | None]:
        for name in self.procs():  # nothing may stay stopped while the others drain
            try:
                os.kill(self.pid(name), signal.SIGCONT)
            except OSError:
                pass
        return self.stack.stop()


def start(data_dir: Path, secret: str, asr_replicas: int = 2, retention_s: float = 600.0) -> SoakStack:
    """Redis (AOF) + ``serve --redis`` + the five workers (``asr_replicas`` asr) as local processes,
    every one with ``bus.retention_s`` = ``context.room_idle_s`` = ``retention_s``."""
    if not COMPOSE.is_file():
        raise UserError(f"{COMPOSE} not found: run the soak from a checkout of emostream")
    env = {**os.environ, "EMOSTREAM_API_SECRET": secret, "REDIS_PASSWORD": secrets.token_hex(16)}
    env |= {"EMOSTREAM_BUS_RETENTION_S": str(retention_s), "EMOSTREAM_CONTEXT_ROOM_IDLE_S": str(retention_s)}
    env.pop("EMOSTREAM_BUS_URL", None)
    stack = localstack.start(COMPOSE, data_dir=data_dir, scale={"asr": asr_replicas}, env=env)
    return SoakStack(stack, secret)
