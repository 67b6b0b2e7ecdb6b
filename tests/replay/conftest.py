"""A synthesized 3-dialogue MELD folder (dialogues 0, 2 and 3 of the dev fixture: 11 clips), built once."""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from emostream.cli import main

FIXTURE = Path(__file__).parents[1] / "fixtures" / "meld" / "dev_sample.csv"
DIALOGUES = (0, 2, 3)


def subset_csv(dst: Path, dialogues: tuple[int, ...], extra_rows: list[list[str]] | None = None) -> Path:
    """Copy the fixture's header and the rows of ``dialogues`` (unchanged) plus ``extra_rows``."""
    rows = list(csv.reader(io.StringIO(FIXTURE.read_text(encoding="utf-8-sig"), newline="")))
    kept = [rows[0]] + [r for r in rows[1:] if int(r[5]) in dialogues] + (extra_rows or [])
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(kept)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(buf.getvalue(), encoding="utf-8")
    return dst


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("synth")
    source = subset_csv(work / "src" / "dev_sent_emo.csv", DIALOGUES)
    root = work / "meld"
    assert main(["replay", "synth", "--csv", str(source), "--dialogues", "3", "--out", str(root)]) == 0
    assert len(list((root / "dev_splits_complete").glob("*.mp4"))) == 11
    return root


@pytest.fixture
def copy_root(synth_root: Path, tmp_path: Path) -> Path:
    """A private copy of the synthesized folder that a test may damage."""
    return Path(shutil.copytree(synth_root, tmp_path / "meld"))


Replay = Callable[..., tuple[dict[str, Any], str]]


@pytest.fixture
def replay(capsys: pytest.CaptureFixture[str]) -> Replay:
    """``replay(*args)`` runs ``emostream replay meld ... --json``; returns (last stdout line as JSON, stderr)."""

    def run(*args: str) -> tuple[dict[str, Any], str]:
        code = main(["replay", "meld", "--json", "--quiet", *args])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        last = captured.out.strip().splitlines()[-1]
        return json.loads(last), captured.err

    return run


@pytest.fixture
def make_csv() -> Callable[..., Path]:
    """``make_csv(dst, dialogues, extra_rows)``: a MELD CSV with some fixture dialogues (+ extra rows)."""
    return subset_csv
