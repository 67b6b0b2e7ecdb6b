"""Facial analysis on real images: detection, expression, head pose, masking, speaker choice, key frames."""

from __future__ import annotations

import numpy as np

from emostream.schema import EMOTIONS
from emostream.workers.face.analyze import FaceAnalyzer
from emostream.workers.face.expression import FER_TO_MELD, to_meld
from emostream.workers.face.image import decode_jpeg, face_mask
from emostream.workers.face.landmarks import FaceLandmarks
from emostream.workers.face.select import key_frame_scores, speaker_track, top_k_in_time_order

from .conftest import grid_of_faces, place


def test_astronaut_face_landmarks_blendshapes_pose(landmarker: FaceLandmarks, astronaut: np.ndarray) -> None:
    faces = landmarker.detect(astronaut)
    assert len(faces) == 1
    face = faces[0]
    assert face.landmarks.shape == (478, 3)
    assert len(face.blendshapes) >= 52
    assert face.blendshapes["mouthSmileLeft"] > 0.5 and face.blendshapes["mouthSmileRight"] > 0.5
    x, y, w, h = face.box
    assert 180 < x + w / 2 < 330 and 60 < y + h / 2 < 200  # her face, not the suit or the flag
    yaw, _, roll = face.head_pose
    assert abs(yaw) < 15 and abs(roll) < 10


def test_head_roll_follows_image_rotation(landmarker: FaceLandmarks, astronaut: np.ndarray) -> None:
    upright = landmarker.detect(place((512, 512), astronaut))[0].head_pose[2]
    tilted = landmarker.detect(place((512, 512), astronaut, angle=20))[0].head_pose[2]
    assert 14 < tilted - upright < 26


def test_fer_says_joy_for_astronaut(analyzer: FaceAnalyzer, astronaut: np.ndarray) -> None:
    result = analyzer.analyze([(0.0, astronaut)])
    assert result.face_found and len(result.key_frames) == 1
    probs = result.key_frames[0].expression
    assert EMOTIONS[int(np.argmax(probs))] == "joy"
    assert probs.max() > 0.9
    assert abs(float(probs.sum()) - 1.0) < 1e-3


def test_fer_label_mapping_is_meld_order() -> None:
    fer = np.zeros(7, np.float32)
    fer[3] = 1.0  # FER "happy"
    assert EMOTIONS[int(np.argmax(to_meld(fer)))] == "joy"
    fer = np.eye(7, dtype=np.float32)[0]  # FER "angry"
    assert EMOTIONS[int(np.argmax(to_meld(fer)))] == "anger"
    assert sorted(FER_TO_MELD.tolist()) == list(range(7))


def test_hopper_face_found(analyzer: FaceAnalyzer, hopper: np.ndarray) -> None:
    result = analyzer.analyze([(0.0, hopper)])
    assert result.face_found
    x, y, w, h = result.key_frames[0].box
    assert w > 100 and h > 100  # a portrait: the face is big
    assert 0 <= x and x + w <= hopper.shape[1] + 5


def test_masking_leaves_only_the_face(analyzer: FaceAnalyzer, astronaut: np.ndarray) -> None:
    kf = analyzer.analyze([(0.0, astronaut)]).key_frames[0]
    crop = decode_jpeg(kf.crop_jpeg)
    assert crop is not None and crop.shape == (224, 224, 3)
    gray = crop.mean(axis=2)
    for corner in (gray[:24, :24], gray[:24, -24:], gray[-24:, :24], gray[-24:, -24:]):
        assert corner.max() < 25, "background must be black"
    assert gray[90:134, 90:134].mean() > 80, "the face centre must be kept"
    # In the source frame, the kept region is the face oval: a small part of the picture.
    mask = face_mask(astronaut.shape, kf.face)
    assert 0.02 < mask.mean() < 0.15
    ys, xs = np.nonzero(mask)
    x, y, w, h = kf.face.box
    assert xs.min() >= x - 2 and xs.max() <= x + w + 2 and ys.min() >= y - 2 and ys.max() <= y + h + 2


def test_masking_can_be_turned_off(landmarker: FaceLandmarks, astronaut: np.ndarray) -> None:
    from emostream.workers.face.analyze import AnalyzeOptions
    from emostream.workers.face.expression import ExpressionModel

    class Flat:
        name = "flat"

        def probs(self, rgb: np.ndarray) -> np.ndarray:
            return np.full(7, 1 / 7, np.float32)

    model: ExpressionModel = Flat()
    plain = FaceAnalyzer(landmarker, model, AnalyzeOptions(mask_background=False)).analyze([(0.0, astronaut)])
    crop = decode_jpeg(plain.key_frames[0].crop_jpeg)
    assert crop is not None and crop[:10, :10].mean() > 25  # background (hair, suit) still visible


def test_speaker_is_largest_consistent_face(
    analyzer: FaceAnalyzer, astronaut: np.ndarray, hopper: np.ndarray
) -> None:
    canvas = np.full((480, 640, 3), 80, np.uint8)
    canvas[:, :400] = place((480, 400), astronaut[0:300, 100:420], scale=1.5)  # face ~135 px
    canvas[40:280, 400:640] = place((240, 240), hopper, scale=0.5)  # face ~90 px, behind her
    frames = [(i / 3, canvas) for i in range(4)]
    result = analyzer.analyze(frames)
    assert result.faces_max == 2
    for kf in result.key_frames:
        x, _, w, _ = kf.box
        assert x + w / 2 < 400, "the speaker is the big face on the left"
        assert EMOTIONS[int(np.argmax(kf.expression))] == "joy"


def test_speaker_track_prefers_consistent_over_one_large_frame() -> None:
    steady = (100.0, 100.0, 80.0, 80.0)
    flash = (300.0, 50.0, 150.0, 150.0)  # bigger, but only in one frame
    boxes = [[steady], [steady, flash], [steady], [steady], [(102.0, 101.0, 80.0, 80.0)]]
    chosen = speaker_track(boxes)
    assert sorted(chosen) == [0, 1, 2, 3, 4]
    assert chosen[1] == 0  # the steady face, index 0 in frame 1
    assert speaker_track([[], []]) == {}


def test_key_frames_top_k_in_time_order() -> None:
    probs = np.asarray(
        [[0.9, 0.02, 0.02, 0.02, 0.02, 0.01, 0.01]] * 3 + [[0.05, 0.9, 0.01, 0.01, 0.01, 0.01, 0.01]],
        np.float32,
    )
    scores = key_frame_scores(probs)
    assert int(np.argmax(scores)) == 3  # confident *and* changed
    picked = top_k_in_time_order(scores, 2)
    assert picked == sorted(picked) and 3 in picked
    assert top_k_in_time_order(scores, 0) == []
    flat = np.full(9, 0.9, np.float32)  # a still face: equal scores
    assert top_k_in_time_order(flat, 3) == [0, 4, 8]
    assert top_k_in_time_order(np.asarray([0.2, 0.9, 0.95, 0.3], np.float32), 2) == [1, 2]
    assert top_k_in_time_order(flat[:2], 5) == [0, 1]


def test_clip_key_frames_time_ordered_and_bounded(analyzer: FaceAnalyzer, clip: list) -> None:
    window = [f for f in clip if f[0] < 3.0][::5]  # 3 fps over the astronaut part
    shuffled = window[::-1]
    result = analyzer.analyze(shuffled)
    times = [kf.t for kf in result.key_frames]
    assert len(times) == analyzer.options.top_k
    assert times == sorted(times)
    assert result.frames_seen == len(window) and result.frames_bad == 0


def test_twenty_faces_no_crash(analyzer: FaceAnalyzer, astronaut: np.ndarray) -> None:
    grid = grid_of_faces(np.ascontiguousarray(astronaut[20:260, 160:400]), n=20)
    result = analyzer.analyze([(0.0, grid), (0.33, grid)])
    assert result.frames_bad == 0
    assert result.faces_max <= analyzer.landmarks.max_faces
    assert len(result.key_frames) <= 2


def test_masked_crop_at_the_border_is_padded_not_stretched(
    analyzer: FaceAnalyzer, astronaut: np.ndarray
) -> None:
    edge = np.ascontiguousarray(astronaut[:, 200:])  # her face is cut by the left border
    kf = analyzer.analyze([(0.0, edge)]).key_frames[0]
    crop = decode_jpeg(kf.crop_jpeg)
    assert crop is not None and crop.shape == (224, 224, 3)
    ys, xs = np.nonzero(face_mask(edge.shape, kf.face))
    cy, cx = np.nonzero(crop.mean(axis=2) > 30)
    sx = (cx.max() - cx.min()) / (xs.max() - xs.min())
    sy = (cy.max() - cy.min()) / (ys.max() - ys.min())
    assert abs(sx - sy) < 0.12 * sy, "same scale on both axes (a stretched crop would be ~1.5x wider)"
