"""`replay synth` builds a MELD-layout folder of real, decodable mp4 clips with per-speaker voice and face."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from emostream.cli import main
from emostream.replay.layout import open_layout

FIXTURE = Path(__file__).parents[1] / "fixtures" / "meld" / "dev_sample.csv"


def _media(path: Path) -> tuple[float, np.ndarray, np.ndarray]:
    with av.open(str(path)) as c:
        audio = np.concatenate([f.to_ndarray().reshape(2, -1) for f in c.decode(audio=0)], axis=1)
    with av.open(str(path)) as c:
        frame = next(c.decode(video=0)).to_ndarray(format="bgr24")
        duration = float(c.duration or 0) / 1e6
    return duration, audio, frame


def test_synth_one_dialogue(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "meld"
    assert main(["replay", "synth", "--csv", str(FIXTURE), "--dialogues", "1", "--out", str(out)]) == 0
    assert "synthesized 2 clips" in capsys.readouterr().out
    layout = open_layout(out, "dev")
    assert sorted(layout.clips) == [(0, 0), (0, 1)]
    # the CSV rows are copied unchanged, mis-decoded quotes included
    copied = (out / "dev_sent_emo.csv").read_text(encoding="utf-8")
    assert "he’s lost it" in copied and "dia" not in copied and copied.count("\n") == 3
    d0, a0, f0 = _media(layout.clips[(0, 0)])
    d1, a1, f1 = _media(layout.clips[(0, 1)])
    # "Oh my God, he's lost it. He's totally lost it." is much longer than "What?"
    assert d0 > d1 + 1.0 and d1 > 1.0
    for audio in (a0, a1):
        rms = np.sqrt(np.mean(audio**2, axis=0))
        assert rms[: int(0.25 * 48000)].max() < 1e-3  # silent lead-in
        assert rms.max() > 0.01  # speech
    # Phoebe and Monica look different (astronaut vs grace_hopper)
    assert f0.shape == f1.shape == (320, 320, 3)
    assert np.abs(f0.astype(int) - f1.astype(int)).mean() > 20
