"""`emostream bench NAME`: benchmarks, one module each under emostream/bench/.

Each bench module exposes ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int`` and prints one
JSON line per measured variant with ``--json``. Speed is reported as medians (p50/p95) measured in one
run, because the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
from pathlib import Path
from typing import Any

BENCHES: tuple[str, ...] = ("bus", "asr", "voices", "visual", "quant", "events", "call", "soak")

HELP = "Benchmarks: bus, asr, voices, visual, quant, events, call, soak (medians in one run, JSON lines with --json)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench", metavar="NAME", required=True, action=_LazyBenches)
    for name in BENCHES:
        text = _help_of(name)
        sub.add_parser(name, help=text, description=text)


def _help_of(name: str) -> str:
    """A bench module's ``HELP`` read from its source: listing the benches imports none of them (their
    imports, aiortc, aiohttp and the models' runtimes, cost seconds for every ``emostream --help``)."""
    spec = importlib.util.find_spec(f"emostream.bench.{name}")
    assert spec is not None and spec.origin is not None, name
    for node in ast.parse(Path(spec.origin).read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "HELP" for t in node.targets):
            return str(ast.literal_eval(node.value))
    raise AssertionError(f"emostream.bench.{name} has no HELP string")


class _LazyBenches(argparse._SubParsersAction):
    """Subcommands whose module is imported (and its arguments added) only once it is chosen."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        chosen = self._name_parser_map.get(values[0])
        if chosen is not None and chosen.get_default("_bench") is None:
            module = importlib.import_module(f"emostream.bench.{values[0]}")
            module.add_arguments(chosen)
            chosen.set_defaults(_bench=module.run)
        super().__call__(parser, namespace, values, option_string)


def run(args: argparse.Namespace) -> int:
    return int(args._bench(args) or 0)
