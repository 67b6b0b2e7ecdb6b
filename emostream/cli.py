"""The ``emostream`` command: one entry point, a module per command under emostream/commands/.

Each command module exposes ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.
User-facing errors are raised as :class:`UserError` and printed as one line, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
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
    "demo",
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
    _everywhere(parser)
    return parser


def _everywhere(parser: argparse.ArgumentParser) -> None:
    """Let ``--config`` go after any subcommand too, and give every nested subcommand a description.

    ``emostream config show --config f`` and ``emostream --config f config show`` mean the same; the
    nested copies default to SUPPRESS so they never overwrite a value given before the subcommand. A
    subcommand with its own ``--config`` (``train text``: the training file) keeps it.
    """
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {a.dest: a.help for a in action._choices_actions}
        for name, child in action.choices.items():
            if child.description is None and helps.get(name):
                child.description = str(helps[name])[:1].upper() + str(helps[name])[1:] + "."
            if "-" in child.prefix_chars and "--config" not in child._option_string_actions:
                child.add_argument(
                    "--config",
                    metavar="FILE",
                    default=argparse.SUPPRESS,
                    help="TOML settings file (also accepted before the command)",
                )
            _everywhere(child)


def main(argv: Sequence[str] | None = None) -> int:
    # A crash inside a native library (ONNX Runtime, CTranslate2, MediaPipe, FFmpeg) would end the
    # process with nothing but "Segmentation fault"; this prints which Python call it was in.
    if not faulthandler.is_enabled():
        with contextlib.suppress(OSError, ValueError, AttributeError):  # stderr without a file (captured)
            faulthandler.enable()
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
