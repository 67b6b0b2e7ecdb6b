"""Per-utterance facial analysis (Emotion-Qwen FEC): frames in, key frames of the speaker's face out.

Pure computation, no bus: the ``fec`` stage, the benchmark and the tests all call
:meth:`FaceAnalyzer.analyze` with decoded frames.
"""

from __future__ import annotations

import queue
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from emostream.runtime.niceness import lower_this_thread
from emostream.workers.face.expert import FaceEvidence, face_expert
from emostream.workers.face.expression import ExpressionModel
from emostream.workers.face.image import Image, decode_jpeg, encode_jpeg, face_crop, masked_crop, normalize
from emostream.workers.face.landmarks import Face, FaceLandmarks
from emostream.workers.face.memo import MISSING, Memo, digest
from emostream.workers.face.quality import FaceScorer, Quality, frame_quality
from emostream.workers.face.select import key_frame_scores, top_k_in_time_order
from emostream.workers.face.speaker import active_speaker


@dataclass(frozen=True, slots=True)
class AnalyzeOptions:
    top_k: int = 4
    """Key frames kept per utterance."""
    mask_background: bool = True
    """Black out everything but the face oval in the key-frame crops."""
    max_side: int = 640
    """Frames are analysed at most this large (4K inputs are downscaled first)."""
    crop_size: int = 224
    """Side of the square key-frame crop (what a VLM sees)."""
    change_weight: float = 0.5
    """Weight of expression change vs confidence in the key-frame score."""
    jpeg_quality: int = 90
    memo_frames: int = 0
    """Frames whose detection and speaker reading are remembered by content (0: none)."""
    nice: int = 0
    """Nice value added to the landmarker pool's threads (:mod:`emostream.runtime.niceness`)."""


@dataclass(slots=True)
class KeyFrame:
    """One chosen frame of the speaker's face."""

    t: float
    face: Face
    expression: np.ndarray
    """Probabilities over schema.EMOTIONS."""
    score: float
    crop_jpeg: bytes
    box: tuple[float, float, float, float]
    """Face box in the source frame's pixels (before the analysis downscale)."""
    quality: float = 1.0
    """Weight of this reading in the face expert (:mod:`emostream.workers.face.quality`)."""


@dataclass(slots=True)
class Analysis:
    key_frames: list[KeyFrame] = field(default_factory=list)
    """In time order."""
    frames_seen: int = 0
    frames_bad: int = 0
    """Undecodable or unusable frames (corrupt JPEG, 1x1, wrong shape)."""
    frames_with_face: int = 0
    faces_max: int = 0
    """Most faces seen in one frame (several people in the picture)."""
    evidence: FaceEvidence | None = None
    """The face expert's reading of the utterance (None without a usable face)."""
    qualities: list[Quality] = field(default_factory=list)
    """Quality of each of the speaker's frames, in time order."""

    @property
    def face_found(self) -> bool:
        return bool(self.key_frames)


class FaceAnalyzer:
    """Landmarks + expression per frame, speaker-face selection, top-k key frames with masked crops.

    With several landmarkers (``fec.threads``), an utterance's frames are analysed in parallel: a
    Tasks-API landmarker runs one image at a time, but different instances run concurrently (MediaPipe
    releases the GIL), so 2 instances on 2 cores roughly halve the FEC latency.
    """

    def __init__(
        self,
        landmarks: FaceLandmarks | Sequence[FaceLandmarks],
        expression: ExpressionModel,
        options: AnalyzeOptions | None = None,
        scorer: FaceScorer | None = None,
    ) -> None:
        self.scorer = scorer
        """Detection-confidence scorer of the face quality; None counts every detection as certain."""
        self.pool = [landmarks] if isinstance(landmarks, FaceLandmarks) else list(landmarks)
        if not self.pool:
            raise ValueError("FaceAnalyzer needs at least one landmarker")
        self.expression = expression
        self.options = options or AnalyzeOptions()
        self._free: queue.SimpleQueue[FaceLandmarks] = queue.SimpleQueue()
        for lm in self.pool:
            self._free.put(lm)
        self._executor = (
            ThreadPoolExecutor(
                len(self.pool), "fec", initializer=lower_this_thread, initargs=(self.options.nice,)
            )
            if len(self.pool) > 1
            else None
        )
        self.memo = Memo(2 * self.options.memo_frames)
        """Per frame (by JPEG content): its detection, and the reading of the face chosen in it."""

    @property
    def landmarks(self) -> FaceLandmarks:
        return self.pool[0]

    def _prepare(self, raw: np.ndarray | bytes | None) -> tuple[Image, float, list[Face]] | None:
        """Decode/normalise one frame and find its faces: (image, source/analysis scale, faces)."""
        arr = decode_jpeg(raw) if isinstance(raw, bytes | bytearray) else raw
        img = normalize(arr, self.options.max_side)
        if img is None or arr is None:
            return None
        lm = self._free.get()
        try:
            return img, arr.shape[1] / img.shape[1], lm.detect(img)
        finally:
            self._free.put(lm)

    def prepare_all(
        self, raws: Sequence[np.ndarray | bytes | None]
    ) -> list[tuple[Image, float, list[Face]] | None]:
        """``_prepare`` of every frame, in order (in parallel over the landmarker pool)."""
        if self._executor is None or len(raws) < 2:
            return [self._prepare(r) for r in raws]
        return list(self._executor.map(self._prepare, raws))

    def _prepared(
        self, raws: Sequence[np.ndarray | bytes | None], keys: Sequence[bytes | None]
    ) -> list[tuple[Image, float, list[Face]] | None]:
        """``prepare_all`` of the frames the memo does not already hold."""
        got = [self.memo.get(k) for k in keys]
        todo = [i for i, g in enumerate(got) if g is MISSING]
        for i, prepared in zip(todo, self.prepare_all([raws[i] for i in todo]), strict=True):
            got[i] = prepared
            self.memo.put(keys[i], prepared)
        return got

    def _read(
        self, key: bytes | None, image: tuple[float, Image, float], face: Face, index: int
    ) -> tuple[np.ndarray, Quality]:
        """The expression probabilities and quality of face ``index`` of a frame (remembered)."""
        found = self.memo.get((key, index) if key is not None else None)
        if found is not MISSING:
            return found
        crop = face_crop(image[1], face)
        read = (np.asarray(self.expression.probs(crop), dtype=np.float32), self._quality(image, face, crop))
        self.memo.put((key, index) if key is not None else None, read)
        return read

    def close(self) -> None:
        """Close every landmarker of the pool (the analyzer is unusable afterwards)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        for lm in self.pool:
            lm.close()
        if self.scorer is not None:
            self.scorer.close()

    def analyze(
        self,
        frames: Sequence[tuple[float, np.ndarray | bytes | None]],
        speech: tuple[float, float] | None = None,
    ) -> Analysis:
        """``frames`` = (media time, image array, JPEG bytes, or None when missing), in any order;
        ``speech`` = the participant's speech window (start, end) in media time (all frames when None),
        against which mouth movement picks the speaking face among several."""
        out = Analysis(frames_seen=len(frames))
        ordered = sorted(frames, key=lambda f: f[0])
        keys = [digest(raw) for _, raw in ordered]
        images: list[tuple[float, Image, float]] = []
        faces: list[list[Face]] = []
        image_keys: list[bytes | None] = []
        for (t, _), key, prepared in zip(
            ordered, keys, self._prepared([r for _, r in ordered], keys), strict=True
        ):
            if prepared is None:
                out.frames_bad += 1
                continue
            img, scale, found = prepared
            images.append((t, img, scale))
            faces.append(found)
            image_keys.append(key)
        out.faces_max = max((len(f) for f in faces), default=0)
        out.frames_with_face = sum(1 for f in faces if f)
        talking = None if speech is None else [speech[0] <= t <= speech[1] for t, _, _ in images]
        chosen, _ = active_speaker(faces, talking)
        order = sorted(chosen)
        if not order:
            return out
        reads = [self._read(image_keys[i], images[i], faces[i][chosen[i]], chosen[i]) for i in order]
        probs = np.stack([p for p, _ in reads]).astype(np.float32)
        out.qualities = [q for _, q in reads]
        out.evidence = face_expert(
            probs, out.qualities, len(images), [faces[i][chosen[i]].blendshapes for i in order]
        )
        scores = key_frame_scores(probs, self.options.change_weight)
        for j in top_k_in_time_order(scores, self.options.top_k):
            i = order[j]
            t, img, scale = images[i]
            face = faces[i][chosen[i]]
            crop = (
                masked_crop(img, face, size=self.options.crop_size)
                if self.options.mask_background
                else face_crop(img, face, margin=0.15)
            )
            x, y, w, h = face.box
            out.key_frames.append(
                KeyFrame(
                    t=t,
                    face=face,
                    expression=probs[j],
                    score=float(scores[j]),
                    crop_jpeg=encode_jpeg(crop, self.options.jpeg_quality),
                    box=(x * scale, y * scale, w * scale, h * scale),
                    quality=out.qualities[j].weight,
                )
            )
        return out

    def _quality(self, image: tuple[float, Image, float], face: Face, crop: Image) -> Quality:
        _, img, scale = image
        x, y, w, h = face.box
        score = None if self.scorer is None else self.scorer.score(face_crop(img, face, margin=0.25))
        return frame_quality(crop, (x * scale, y * scale, w * scale, h * scale), face.head_pose, score)
