"""`emostream serve`: the event API, with the whole pipeline in-process (or the stages on Redis workers)."""

from __future__ import annotations

import argparse
import asyncio

from emostream.commands import settings_of
from emostream.errors import UserError
from emostream.runtime.topology import PIPELINE as ALL_STAGES

HELP = "Serve the event API (SSE, WebSocket, JSON) with the pipeline in-process, or over --redis workers."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", metavar="H", help="bind address (default: api.host, 127.0.0.1)")
    parser.add_argument("--port", type=int, metavar="P", help="port (default: api.port, 8765; 0 = any free)")
    parser.add_argument(
        "--redis",
        metavar="URL",
        help="use this Redis topology: only the API runs here, the stages run as `emostream worker`",
    )
    parser.add_argument(
        "--stages",
        metavar="LIST",
        help=f"embedded stages to run, comma-separated, or 'none' for an API-only server (default: {','.join(ALL_STAGES)})",
    )


def run(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    host = args.host or settings.api.host
    port = settings.api.port if args.port is None else args.port
    if not 0 <= port <= 65535:
        raise UserError(f"--port {port} is not a TCP port (0-65535)", exit_code=2)
    embedded = settings.bus.url.startswith("memory")
    names = _stages(args.stages, embedded)

    from emostream.log import setup_logging
    from emostream.server.serve import resolve_secret, serve_forever

    setup_logging(settings.stage.log_level, settings.stage.log_format)
    secret, made_up = resolve_secret(settings, host)

    def stages():  # type: ignore[no-untyped-def]
        from emostream.runtime.topology import build

        return build(settings, names) if names else []

    return asyncio.run(serve_forever(settings, host, port, stages, secret, made_up))


def _stages(spec: str | None, embedded: bool) -> tuple[str, ...]:
    if spec is None:
        return ALL_STAGES if embedded else ()
    if spec.strip() == "none":
        return ()
    names = tuple(n.strip() for n in spec.split(",") if n.strip())
    unknown = [n for n in names if n not in ALL_STAGES]
    if unknown:
        raise UserError(
            f"unknown stage {unknown[0]!r} in --stages: choose from {', '.join(ALL_STAGES)} or none",
            exit_code=2,
        )
    return names
