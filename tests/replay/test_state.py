"""Resume state: finished dialogues are atomic files; a rerun with other parameters refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from emostream.errors import UserError
from emostream.replay.metrics import RowResult
from emostream.replay.state import RunState


def _rows(d: int) -> list[RowResult]:
    return [
        RowResult(dialogue=d, index=i, speaker="s", text="t", true="joy", pred="joy", source="csv")
        for i in range(3)
    ]


def test_done_load_and_parameter_guard(tmp_path: Path) -> None:
    params = {"split": "dev", "text": "gold"}
    state = RunState(tmp_path, params)
    assert state.done() == set()
    state.save(4, _rows(4), [{"dialogue": 4, "transcript": "x"}])
    (tmp_path / "dialogues" / "dia5.tmp").write_text("half written")  # a kill mid-write leaves no marker
    again = RunState(tmp_path, params)
    assert again.done() == {4}
    assert [r.index for r in again.load([5, 4])] == [0, 1, 2]
    assert again.merge_features([4, 5]).read_text().count("\n") == 1
    with pytest.raises(UserError, match="other text .*pass another --out or --fresh"):
        RunState(tmp_path, {"split": "dev", "text": "asr"})
    assert RunState(tmp_path, {"split": "dev", "text": "asr"}, fresh=True).done() == set()
