"""Container healthchecks: ``python -m emostream.healthcheck api|worker [--port P]`` exits 0 when healthy.

``api``: ``/readyz`` answers 200 (stages ready, bus reachable, not draining). ``worker``: the stage's
``/metrics`` shows its consumer-lag gauge (set only after the models loaded and the consumer groups
exist) and the bus (``bus.url``) answers a PING now, so a worker cut off from Redis turns unhealthy.
Stdlib HTTP only: the images carry no curl.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence

LAG_GAUGE = "emostream_consumer_lag{"


def _get(url: str, timeout: float) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (loopback URL we build)
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def check_api(host: str, port: int, timeout: float) -> str:
    """Empty when ``/readyz`` says ready, else why not."""
    try:
        status, body = _get(f"http://{host}:{port}/readyz", timeout)
    except OSError as exc:
        return f"api /readyz on {host}:{port} unreachable: {exc}"
    return "" if status == 200 else f"api not ready ({status}): {body.strip()[:200]}"


def check_worker(host: str, port: int, timeout: float, bus_url: str) -> str:
    """Empty when the stage serves its lag gauge and the bus answers, else why not."""
    try:
        status, body = _get(f"http://{host}:{port}/metrics", timeout)
    except OSError as exc:
        return f"worker /metrics on {host}:{port} unreachable (still loading models?): {exc}"
    if status != 200 or LAG_GAUGE not in body:
        return f"worker on {host}:{port} has not started consuming (no {LAG_GAUGE[:-1]} gauge yet)"
    if bus_url.startswith("memory"):
        return ""
    return asyncio.run(_ping(bus_url, timeout))


async def _ping(url: str, limit_s: float) -> str:
    from emostream.bus import open_bus
    from emostream.config import load_settings, redact_url

    bus = open_bus(url, load_settings().bus)
    try:
        await asyncio.wait_for(bus.ping(), limit_s)
        return ""
    except Exception as exc:  # any failure is the answer: unhealthy, with the reason
        return f"bus {redact_url(url)} unreachable: {exc}"
    finally:
        await bus.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emostream.healthcheck", description=__doc__)
    parser.add_argument("kind", choices=("api", "worker"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args(argv)
    if args.kind == "api":
        problem = check_api(args.host, args.port, args.timeout)
    else:
        from emostream.config import ConfigError, load_settings

        try:
            url = load_settings().bus.url
        except ConfigError as exc:
            problem = str(exc)
        else:
            problem = check_worker(args.host, args.port, args.timeout, url)
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
