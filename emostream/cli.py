"""The ``emostream`` command: one entry point, a module per command under emostream/commands/.

Each command module exposes ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.
User-facing errors are raised as :class:`UserError` and printed as one line, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from emostream import __version__
from emostream.errors import UserError

COMMANDS: tuple[str, ...] = (
    "serve",
    "worker",
    "replay",
    "events",
    "analyze",
    "join",
    "models",
    "eval",
    "bench",
    "train",
    "token",
    "schema",
    "config",
    "up",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emostream",
        description="Streaming, real-time, multimodal conversation analyzer (per-speaker emotion events).",
    )
    parser.add_argument("--version", action="version", version=f"emostream {__version__}")
    parser.add_argument("--config", metavar="FILE", help="TOML settings file (see `emostream config show`)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"emostream.commands.{name.replace('-', '_')}")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except UserError as exc:
        print(f"emostream {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"emostream {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
