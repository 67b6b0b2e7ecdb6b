"""The MELD reader repairs the CSV's defects and never mixes dialogues."""

from __future__ import annotations

from pathlib import Path

import pytest

from emostream.errors import UserError
from emostream.evaluation.meld import clean_text, read_meld, speaker_indices, text_variant

HEADER = (
    "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime\n"
)


def test_clean_text_repairs_mojibake_and_whitespace() -> None:
    assert clean_text("He\u00e2\u20ac\u2122s  lost\u00a0it\u00e2\u20ac\u00a6 ") == "He's lost it..."
    assert clean_text("It\u2019s \u201cfine\u201d") == 'It\'s "fine"'
    assert clean_text("\tso   what\r\n") == "so what"
    # cp1252 cannot re-encode \x9d: the fallback table still repairs the closing quote
    assert clean_text("\u00e2\u20ac\u0153hi\u00e2\u20ac\x9d") == '"hi"'


def test_fixture_reads_in_dialogue_order(meld_csv: Path) -> None:
    split = read_meld(meld_csv)
    assert len(split) == 42 and not split.skipped
    assert sorted(split.dialogues) == [0, 1, 2, 3, 4]
    for d, turns in split.dialogues.items():
        assert all(u.dialogue == d for u in turns)
        assert [u.index for u in turns] == sorted(u.index for u in turns)
    first = split.dialogues[0][0]
    assert first.text == "Oh my God, he's lost it. He's totally lost it."
    assert first.emotion == "sadness" and first.label == 3


def test_defective_rows_are_skipped_and_counted(tmp_path: Path) -> None:
    rows = [
        '1,"Hi\u00e2\u20ac\u2122 there",Ross,Joy,positive,7,1,1,1,a,b',
        "2,Hello,Rachel,confused,neutral,7,0,1,1,a,b",  # unknown label
        "3,   ,Ross,neutral,neutral,7,2,1,1,a,b",  # empty text
        "4,What,Monica,neutral,neutral,x,3,1,1,a,b",  # bad id
        "5,Again,Ross,anger,negative,7,1,1,1,a,b",  # duplicate id
        "6,Ok,Monica,neutral,neutral,3,0,1,1,a,b",
    ]
    path = tmp_path / "m.csv"
    path.write_bytes((HEADER + "\r\n".join(rows) + "\r\n").encode("utf-8"))
    split = read_meld(path)
    assert dict(split.skipped) == {"unknown_label": 1, "empty_text": 1, "bad_id": 1, "duplicate": 1}
    assert list(split.dialogues) == [3, 7]
    assert split.dialogues[7][0].text == "Hi' there" and split.dialogues[7][0].emotion == "joy"


def test_speaker_indices_by_first_appearance(meld_csv: Path) -> None:
    turns = read_meld(meld_csv).dialogues[0]
    idx = speaker_indices(turns)
    names: dict[str, int] = {}
    for u, i in zip(turns, idx, strict=True):
        assert names.setdefault(u.speaker, len(names)) == i
    assert idx[0] == 0


def test_missing_file_and_columns_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        read_meld(tmp_path / "nope.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(UserError, match="missing columns"):
        read_meld(bad)


def test_text_variants_perturb_only_what_they_name() -> None:
    line = "Oh my God!! Are you OK?... I'm fine."
    assert text_variant(line, "gold") == line
    assert text_variant(line, "flat") == "Oh my God. Are you OK. I'm fine."
    assert text_variant(line, "lower") == line.lower()
    assert text_variant(line, "flat-lower") == "oh my god. are you ok. i'm fine."
    assert text_variant(line, "bare") == "Oh my God Are you OK I'm fine"
    assert text_variant("?!", "bare") == "?!"  # never empties an utterance
    with pytest.raises(UserError, match="unknown text variant"):
        text_variant(line, "shouty")


def test_read_meld_applies_the_variant_to_every_utterance(meld_csv: Path) -> None:
    gold, flat = read_meld(meld_csv), read_meld(meld_csv, "flat")
    assert any("!" in u.text or "?" in u.text for u in gold)
    assert not any("!" in u.text or "?" in u.text for u in flat)
    assert [u.label for u in gold] == [u.label for u in flat]
