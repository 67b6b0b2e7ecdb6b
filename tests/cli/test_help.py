"""`emostream --help` stays light: the benches' modules (aiortc, aiohttp, model runtimes) are imported
only when a bench is chosen, and each bench still gets its own arguments and help."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from emostream.cli import main

ROOT = Path(__file__).parents[2]


def test_building_the_parser_imports_no_bench() -> None:
    probe = (
        "import sys; from emostream.cli import build_parser; build_parser(); "
        "print(sorted(m for m in sys.modules if m.startswith('emostream.bench.') or m == 'aiortc'))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stdout


def test_a_chosen_bench_has_its_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["bench", "bus", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "--messages N" in text and "3-stage pipeline" in text and "--config FILE" in text
    assert main(["bench", "events", "--subscribers", "0"]) == 2
    assert "--subscribers, --rate and --seconds must be above 0" in capsys.readouterr().err
