"""Two faces on screen, one talking: the talker's face is chosen, not the larger listener's."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pytest

from emostream.workers.face.analyze import FaceAnalyzer
from emostream.workers.face.select import speaker_track
from emostream.workers.face.speaker import active_speaker, mouth_activity

from .conftest import read_rgb
from .two_faces import two_person_clip


@pytest.fixture(scope="module")
def hopper() -> np.ndarray:
    return read_rgb(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")


@pytest.mark.parametrize(
    ("listener", "talker"), [("0-f15-hao-ph.jpg", "hopper"), ("hopper", "15-f13-anc-ph.jpg")]
)
def test_the_talking_face_is_chosen_over_the_larger_listener(
    face_analyzer: FaceAnalyzer, pyfeat: Path, hopper: np.ndarray, listener: str, talker: str
) -> None:
    def load(name: str) -> np.ndarray:
        return hopper if name == "hopper" else read_rgb(pyfeat / name)

    frames, (talker_x, _) = two_person_clip(face_analyzer.landmarks, load(listener), load(talker))
    faces = [face_analyzer.landmarks.detect(img) for _, img in frames]
    assert sum(len(f) == 2 for f in faces) >= len(faces) - 1, [len(f) for f in faces]
    by_size = speaker_track([[f.box for f in fr] for fr in faces])
    assert all(faces[i][k].centre[0] < 320 for i, k in by_size.items())  # the old rule: the listener
    chosen, activity = active_speaker(faces)
    assert len(chosen) >= len(frames) - 1
    assert all(abs(faces[i][k].centre[0] - talker_x) < 60 for i, k in chosen.items())
    assert max(activity) > 0.1 and min(activity) < 0.03

    analysis = face_analyzer.analyze(frames, speech=(0.0, frames[-1][0]))
    assert analysis.faces_max == 2 and analysis.key_frames
    assert all(abs(kf.box[0] + kf.box[2] / 2 - talker_x) < 60 for kf in analysis.key_frames)
    assert analysis.evidence is not None and analysis.evidence.frames_used == len(chosen)


def test_without_mouth_movement_the_larger_face_wins(
    face_analyzer: FaceAnalyzer, pyfeat: Path, hopper: np.ndarray
) -> None:
    frames, _ = two_person_clip(face_analyzer.landmarks, read_rgb(pyfeat / "0-f15-hao-ph.jpg"), hopper)
    still = [(t, frames[0][1]) for t, _ in frames]  # nobody's mouth moves
    faces = [face_analyzer.landmarks.detect(img) for _, img in still]
    chosen, activity = active_speaker(faces)
    assert all(faces[i][k].centre[0] < 320 for i, k in chosen.items()) and max(activity) < 0.03


def test_only_speech_frames_count(face_analyzer: FaceAnalyzer, pyfeat: Path, hopper: np.ndarray) -> None:
    frames, _ = two_person_clip(face_analyzer.landmarks, read_rgb(pyfeat / "0-f15-hao-ph.jpg"), hopper)
    faces = [face_analyzer.landmarks.detect(img) for _, img in frames]
    chosen, _ = active_speaker(faces, speech=[False] * len(frames))  # the VAD heard nobody
    assert all(faces[i][k].centre[0] < 320 for i, k in chosen.items())


def test_mouth_activity_measures_opening_and_closing() -> None:
    assert mouth_activity([0.3]) == 0.0 and mouth_activity([0.3] * 5) == 0.0
    assert mouth_activity([0.0, 0.4, 0.0, 0.4]) > mouth_activity([0.0, 0.1, 0.0, 0.1]) > 0
