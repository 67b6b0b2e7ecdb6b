"""MELD.Raw layout discovery, dialogue selection and missing-clip reporting."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from emostream.errors import UserError
from emostream.evaluation.meld import read_meld
from emostream.replay.layout import describe_missing, open_layout, parse_dialogues

FIXTURE = Path(__file__).parents[1] / "fixtures" / "meld" / "dev_sample.csv"


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00")
    return path


def test_real_meld_raw_layout(tmp_path: Path) -> None:
    shutil.copy(FIXTURE, tmp_path / "dev_sent_emo.csv")
    _touch(tmp_path / "dev_splits_complete" / "dia0_utt0.mp4")
    _touch(tmp_path / "dev_splits_complete" / "dia0_utt1.MP4")
    _touch(tmp_path / "dev_splits_complete" / "._dia0_utt2.mp4")  # macOS resource fork: ignored
    layout = open_layout(tmp_path, "dev")
    assert layout.csv == tmp_path / "dev_sent_emo.csv"
    assert layout.clip_dir == tmp_path / "dev_splits_complete"
    assert sorted(layout.clips) == [(0, 0), (0, 1)]
    assert layout.clip(0, 1) is not None and layout.clip(0, 2) is None


@pytest.mark.parametrize(
    ("split", "csv_rel", "clip_rel"),
    [
        ("train", "MELD.Raw/train_sent_emo.csv", "MELD.Raw/train/train_splits/dia3_utt1.mp4"),
        ("test", "test_sent_emo.csv", "output_repeated_splits_test/final_videos_testdia3_utt1.mp4"),
        ("test", "MELD.Raw/test_sent_emo.csv", "MELD.Raw/test/output_repeated_splits_test/dia3_utt1.mp4"),
        ("dev", "dev/dev_sent_emo.csv", "dev/dev_splits_complete/dia3_utt1.mp4"),
    ],
)
def test_common_variants(tmp_path: Path, split: str, csv_rel: str, clip_rel: str) -> None:
    (tmp_path / csv_rel).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIXTURE, tmp_path / csv_rel)
    clip = _touch(tmp_path / clip_rel)
    layout = open_layout(tmp_path, split)
    assert layout.csv == tmp_path / csv_rel
    assert layout.clips == {(3, 1): clip}


def test_csv_only_root_has_no_clips(tmp_path: Path) -> None:
    shutil.copy(FIXTURE, tmp_path / "dev_sent_emo.csv")
    layout = open_layout(tmp_path, "dev")
    assert layout.clip_dir is None and not layout.clips
    rows = list(read_meld(layout.csv))
    assert len(layout.missing(rows)) == len(rows) == 42


def test_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no dev_sent_emo.csv under"):
        open_layout(tmp_path, "dev")
    with pytest.raises(UserError, match="unknown split 'val'"):
        open_layout(tmp_path, "val")
    with pytest.raises(UserError, match="is not a folder"):
        open_layout(tmp_path / "nope", "dev")


def test_parse_dialogues() -> None:
    assert parse_dialogues("0-3,12, 7") == {0, 1, 2, 3, 7, 12}
    for bad in ("a-b", "5-2", ",", "1,x"):
        with pytest.raises(UserError, match="bad --dialogues"):
            parse_dialogues(bad)


def test_describe_missing_names_clips() -> None:
    rows = list(read_meld(FIXTURE))
    line = describe_missing(rows[:7], 42, shown=3)
    assert line == "7 of 42 clips missing: dia0_utt0.mp4, dia0_utt1.mp4, dia1_utt0.mp4 (+4 more)"
