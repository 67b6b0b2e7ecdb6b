"""`emostream analyze` on a video file: its frames go through the participant ingest with the audio, so
a smiling face saying neutral words moves the decision towards joy (the clip of the replay test)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from emostream.cli import main
from emostream.replay.synth import SIZE, VOICES, speak, write_clip

from .test_smiling_clip_replay import WORDS, top


def test_analyze_video_lets_the_face_take_part(
    pyfeat: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    smiling = cv2.imread(str(pyfeat / "0-f15-hao-ph.jpg"))
    assert smiling is not None
    clip = tmp_path / "smiling.mp4"
    write_clip(clip, speak(WORDS, VOICES[0]), cv2.resize(smiling, (SIZE + 32, SIZE + 32)))

    assert main(["analyze", "--json", str(clip)]) == 0, capsys.readouterr().err
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.strip().startswith("{")]
    events = [x for x in lines if "label" in x]
    assert len(events) == 1, lines
    (event,) = events
    assert event["visual_status"] == "used" and "visual" in event["modalities"], event
    assert top(event["face_probs"]) == "joy" and event["face_frames"] >= 3, event
    assert top(event["text_probs"]) != "joy"
    assert event["probabilities"]["joy"] > event["text_probs"]["joy"]
