"""`emostream bench NAME`: benchmarks, one module each under emostream/bench/.

Each bench module exposes ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int`` and prints one
JSON line per measured variant with ``--json``. Speed is reported as medians (p50/p95) measured in one
run, because the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import importlib

BENCHES: tuple[str, ...] = ("bus", "asr", "voices", "visual", "quant", "events", "call", "soak")

HELP = (
    "Benchmarks: bus, asr, voices, visual, quant, events, call, soak (medians in one run, JSON lines with --json)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench", metavar="NAME", required=True)
    for name in BENCHES:
        module = importlib.import_module(f"emostream.bench.{name}")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_bench=module.run)


def run(args: argparse.Namespace) -> int:
    return int(args._bench(args) or 0)
