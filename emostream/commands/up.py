"""`emostream up`: the docker-compose topology as local processes (no docker needed)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from emostream.errors import UserError

HELP = "Start docker-compose.yml's topology as local processes: redis-server (AOF), api, every worker."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--compose", default="docker-compose.yml", metavar="FILE", help="compose file to run")
    parser.add_argument(
        "--scale", action="append", default=[], metavar="NAME=N", help="replicas of a service (repeatable)"
    )
    parser.add_argument("--services", metavar="LIST", help="comma-separated subset (default: all)")
    parser.add_argument("--data", default="out/up", metavar="DIR", help="Redis AOF and process logs")
    parser.add_argument("--redis-port", type=int, default=0, metavar="P", help="default: a free port")
    parser.add_argument("--api-port", type=int, default=8765, metavar="P", help="api port (default 8765)")


def parse_scale(items: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        name, _, n = item.partition("=")
        if not n.isdigit() or int(n) < 1:
            raise UserError(f"--scale {item!r}: use NAME=N with N >= 1 (e.g. --scale asr=2)", exit_code=2)
        out[name] = int(n)
    return out


def run(args: argparse.Namespace) -> int:
    from emostream.localstack import start

    services = [s.strip() for s in args.services.split(",")] if args.services else None
    stack = start(
        Path(args.compose),
        data_dir=Path(args.data),
        scale=parse_scale(args.scale),
        services=services,
        redis_port=args.redis_port,
        api_port=args.api_port,
    )
    say = lambda line: print(f"emostream up: {line}", file=sys.stderr, flush=True)  # noqa: E731
    say(f"redis on {stack.redis_url.split('@')[-1]} (AOF in {args.data}), logs in {args.data}/*.log")
    for p in stack.procs:
        say(f"{p.name}: {' '.join(p.argv[3:])}")
    if stack.api_url:
        say(f"api on {stack.api_url} (ready: {stack.api_url}/readyz)")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    problem = ""
    while not stop.wait(1.0):
        problem = stack.check()
        if problem:
            say(problem)
            break
    say("stopping (workers drain first)")
    codes = stack.stop()
    bad = {n: c for n, c in codes.items() if c not in (0, -signal.SIGTERM)}
    if bad:
        say(f"unclean exits: {bad}")
    return 1 if problem or bad else 0
