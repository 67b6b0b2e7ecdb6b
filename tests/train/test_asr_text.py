"""`train asr-text`: real espeak-ng speech through the store's Whisper, cached per utterance, resumable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emostream.bench.speech_data import normalize, speak
from emostream.cli import main
from emostream.evaluation.meld import read_meld
from emostream.evaluation.scores import edit_distance
from emostream.evaluation.transcripts import load_transcripts
from emostream.train.asr_text import voice_of
from emostream.train.text import asr_transcripts


def _head(src: Path, dst: Path, rows: int) -> Path:
    dst.write_text("".join(src.read_text(encoding="utf-8").splitlines(keepends=True)[: rows + 1]))
    return dst


def test_transcripts_are_cached_per_utterance_and_resume(meld_csv: Path, tmp_path: Path) -> None:
    csv, out = _head(meld_csv, tmp_path / "part.csv", 8), tmp_path / "asr.jsonl"
    assert main(["train", "asr-text", "--csv", str(csv), "--out", str(out), "--shard", "0/1"]) == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    rows = {(u.dialogue, u.index): u for d in read_meld(csv).dialogues.values() for u in d}
    assert {(r["dialogue"], r["utterance"]) for r in lines} == set(rows)
    errors = words = 0
    for r in lines:
        u = rows[(r["dialogue"], r["utterance"])]
        assert (r["voice"], r["wpm"]) == voice_of(1, u.dialogue, u.speaker)  # one voice per speaker
        ref = normalize(u.text)
        errors, words = errors + edit_distance(ref, normalize(r["text"])), words + len(ref)
    assert errors / words < 0.6, (errors, words)  # heard, not copied, and not garbage
    assert any(normalize(r["text"]) != normalize(rows[(r["dialogue"], r["utterance"])].text) for r in lines)

    before = out.read_text()
    assert main(["train", "asr-text", "--csv", str(csv), "--out", str(out)]) == 0  # resume: nothing to do
    assert out.read_text() == before
    heard = asr_transcripts([str(out)], read_meld(csv))
    assert heard == load_transcripts(out) and len(heard) == len(rows)


def test_transcripts_that_do_not_cover_train_are_refused(
    meld_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "asr.jsonl"
    out.write_text(
        json.dumps({"dialogue": 0, "utterance": 0, "voice": "en-us", "wpm": 150, "text": "hi"}) + "\n"
    )
    from emostream.errors import UserError

    with pytest.raises(UserError, match="cover"):
        asr_transcripts([str(out)], read_meld(meld_csv))
    out.write_text("not json\n")
    with pytest.raises(UserError, match="asr.jsonl:1"):
        load_transcripts(out)
    assert main(["train", "asr-text", "--csv", str(meld_csv), "--out", str(out), "--shard", "2/2"]) == 1
    assert "I must be in 0..N-1" in capsys.readouterr().err


def test_a_line_that_starts_with_a_dash_is_spoken_not_parsed_as_an_option() -> None:
    assert speak("-leg?", "en-us+m7", 150).size > 16000 * 0.2  # MELD train dialogue 152 has it
