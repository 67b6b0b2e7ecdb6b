"""Run stages: several in one process on one bus (``Pipeline``, used by serve/replay), or one stage as
a worker process (``run_worker``, used by ``emostream worker``) with signals, metrics and logs."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from emostream.bus import Bus, open_bus
from emostream.config import Settings
from emostream.errors import UserError
from emostream.runtime.stage import Stage, StageStats, run_stage

log = logging.getLogger("emostream.runtime.pipeline")


def default_consumer(name: str) -> str:
    """A consumer id unique per process: ``<stage>-<host>-<pid>``."""
    return f"{name}-{socket.gethostname()}-{os.getpid()}"


def install_stop_signals(
    stop: asyncio.Event, force: Callable[[], object] | None = None
) -> Callable[[], None]:
    """SIGTERM/SIGINT set ``stop`` (graceful drain); a second one calls ``force`` (e.g. cancel the
    run: in-flight work stays pending for others). Returns a function that removes the handlers."""
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)

    def on_signal(sig: signal.Signals) -> None:
        if stop.is_set() and force is not None:
            log.warning("second signal: stopping now", extra={"signal": sig.name})
            force()
            return
        log.info("stopping", extra={"signal": sig.name})
        stop.set()

    for sig in signals:
        loop.add_signal_handler(sig, on_signal, sig)

    def remove() -> None:
        for sig in signals:
            loop.remove_signal_handler(sig)

    return remove


@dataclass
class Pipeline:
    """Several stages in one process on one bus, each with its own consumer group."""

    bus: Bus
    settings: Settings
    stages: list[tuple[Stage, str, str | None]] = field(default_factory=list)

    def add(self, stage: Stage, *, consumer: str = "", group: str | None = None) -> Pipeline:
        self.stages.append((stage, consumer or default_consumer(stage.name), group))
        return self

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> dict[str, StageStats]:
        """Run every stage until ``stop``; ``ready`` is set once all consumer groups exist."""
        readies = [asyncio.Event() for _ in self.stages]
        tasks = [
            asyncio.create_task(
                run_stage(s, self.bus, self.settings, consumer=c, group=g, stop=stop, ready=r)
            )
            for (s, c, g), r in zip(self.stages, readies, strict=True)
        ]
        if ready is not None:
            waiter = asyncio.create_task(_all_set(readies, ready))
        try:
            results = await asyncio.gather(*tasks)
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        finally:
            if ready is not None:
                waiter.cancel()
        return {s.name: r for (s, _, _), r in zip(self.stages, results, strict=True)}


async def _all_set(events: list[asyncio.Event], done: asyncio.Event) -> None:
    for e in events:
        await e.wait()
    done.set()


async def warn_if_open(bus: Bus) -> bool:
    """Log a loud warning when the Redis answers clients without credentials; True when it does."""
    open_to_anyone = getattr(bus, "open_to_anyone", None)
    if open_to_anyone is None or not await open_to_anyone():
        return False
    log.warning(
        "REDIS ACCEPTS CLIENTS WITHOUT A PASSWORD: whoever reaches it reads transcripts and emotion "
        "events. Set requirepass (or an ACL user), bind it to 127.0.0.1, and put the password in the URL",
        extra={"bus": getattr(bus, "where", bus.url)},
    )
    return True


async def run_worker(stage: Stage, settings: Settings, *, consumer: str = "") -> StageStats:
    """One stage as a process: connect, serve metrics, run until SIGTERM/SIGINT, then drain."""
    from emostream.config import redact_url
    from emostream.runtime.metrics import serve_metrics

    bus = open_bus(settings.bus.url, settings.bus)
    try:
        await bus.ping()
        served = serve_metrics(settings.stage.metrics_port, settings.stage.metrics_host)
        stop = asyncio.Event()
        consumer = consumer or default_consumer(stage.name)
        where = {"bus": redact_url(settings.bus.url)}
        if served is not None:
            host, port = served.server_address[:2]
            where["metrics"] = f"http://{host!s}:{port}/metrics"
        log.info("worker starting", extra={"stage": stage.name, "consumer": consumer, **where})
        await warn_if_open(bus)
        task = asyncio.create_task(run_stage(stage, bus, settings, consumer=consumer, stop=stop))
        remove = install_stop_signals(stop, force=task.cancel)
        try:
            return await task
        except asyncio.CancelledError:
            if not task.cancelled():
                raise
            raise UserError(
                "stopped without draining (second signal): unfinished messages stay pending until "
                f"another {stage.name} worker reclaims them",
                exit_code=130,
            ) from None
        finally:
            remove()
    finally:
        await bus.close()
