"""Each pulled model loads and works with the runtime the stages use (real weights, real media)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data as skdata

Pulled = Callable[[str], Path]
FER_LABELS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return np.ascontiguousarray(skdata.astronaut())  # RGB, a smiling face


@pytest.fixture(scope="module")
def face_box(pulled: Pulled, astronaut: np.ndarray) -> tuple[int, int, int, int]:
    """MediaPipe FaceLandmarker (Tasks API) on the astronaut: the face's landmark bounding box."""
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    task = pulled("face-landmarker") / "face_landmarker.task"
    options = vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(task)), num_faces=1, output_face_blendshapes=True
    )
    with vision.FaceLandmarker.create_from_options(options) as landmarker:
        result = landmarker.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=astronaut))
    assert len(result.face_landmarks) == 1 and len(result.face_landmarks[0]) == 478
    smile = {c.category_name: c.score for c in result.face_blendshapes[0]}["mouthSmileLeft"]
    assert smile > 0.5
    h, w = astronaut.shape[:2]
    pts = np.array([(p.x * w, p.y * h) for p in result.face_landmarks[0]])
    (x0, y0), (x1, y1) = pts.min(0).astype(int), pts.max(0).astype(int)
    return int(x0), int(y0), int(x1), int(y1)


def test_face_landmarker_finds_the_astronaut(face_box: tuple[int, int, int, int]) -> None:
    x0, y0, x1, y1 = face_box
    assert 150 < x0 < x1 < 300 and 40 < y0 < y1 < 210  # her face, not the suit or the flag


def test_fer_says_happy_for_the_astronaut(
    pulled: Pulled, astronaut: np.ndarray, face_box: tuple[int, int, int, int]
) -> None:
    from ai_edge_litert.interpreter import Interpreter

    x0, y0, x1, y1 = face_box
    gray = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)[y0:y1, x0:x1]
    x = (cv2.resize(gray, (64, 64)).astype(np.float32) / 255.0 - 0.5) * 2.0
    interp = Interpreter(model_path=str(pulled("fer-7class") / "emotion_model_quantized.tflite"))
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    assert list(inp["shape"]) == [1, 64, 64, 1]
    interp.set_tensor(inp["index"], x[None, :, :, None])
    interp.invoke()
    probs = interp.get_tensor(out["index"])[0]
    assert FER_LABELS[int(np.argmax(probs))] == "happy" and probs[3] > 0.9


def test_haar_cascade_detects_the_astronaut(pulled: Pulled, astronaut: np.ndarray) -> None:
    cascade = cv2.CascadeClassifier(
        str(pulled("haarcascade-frontalface") / "haarcascade_frontalface_default.xml")
    )
    assert not cascade.empty()
    faces = cascade.detectMultiScale(cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY), 1.1, 5)
    assert len(faces) == 1 and 150 < faces[0][0] < 250


def _speech(tmp_path: Path, text: str) -> Path:
    wav = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "140", "-w", str(wav), text], check=True)
    return wav


def test_silero_vad_runs_in_onnxruntime(pulled: Pulled, tmp_path: Path) -> None:
    import av
    import onnxruntime as ort

    session = ort.InferenceSession(
        str(pulled("silero-vad") / "silero_vad.onnx"), providers=["CPUExecutionProvider"]
    )
    assert [i.name for i in session.get_inputs()] == ["input", "state", "sr"]
    with av.open(str(_speech(tmp_path, "Please call me back tomorrow morning."))) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=16000)
        audio = np.concatenate(
            [
                f.to_ndarray().reshape(-1)
                for frame in container.decode(audio=0)
                for f in resampler.resample(frame)
            ]
        )
    audio = np.concatenate([np.zeros(16000, np.float32), audio.astype(np.float32)])  # 1 s of silence first
    state, context, probs = np.zeros((2, 1, 128), np.float32), np.zeros(64, np.float32), []
    for start in range(0, len(audio) - 512, 512):
        chunk = audio[start : start + 512]
        x = np.concatenate([context, chunk])[None, :]
        out, state = session.run(None, {"input": x, "state": state, "sr": np.array(16000, np.int64)})
        context = chunk[-64:]
        probs.append(float(out[0, 0]))
    assert max(probs[:25]) < 0.2, "silence is not speech"
    assert max(probs[35:]) > 0.8, "speech is detected"


def test_whisper_tiny_en_transcribes_espeak(pulled: Pulled, tmp_path: Path) -> None:
    from faster_whisper import WhisperModel

    model = WhisperModel(str(pulled("whisper-tiny.en")), device="cpu", compute_type="int8", cpu_threads=2)
    segments, _ = model.transcribe(
        str(_speech(tmp_path, "I am very happy to see you again today.")), beam_size=1
    )
    text = " ".join(s.text for s in segments).lower()
    assert all(word in text for word in ("happy", "see you", "again", "today")), text


def test_sentence_embedding_has_384_dims(pulled: Pulled) -> None:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(pulled("all-MiniLM-L6-v2")), device="cpu")
    emb = model.encode(
        ["I am so happy today", "I feel great", "The invoice is overdue"], normalize_embeddings=True
    )
    assert emb.shape == (3, 384)
    assert float(emb[0] @ emb[1]) > float(emb[0] @ emb[2])


def test_onnx_sentence_encoder_has_384_dims(pulled: Pulled) -> None:
    import onnxruntime as ort
    from tokenizers import Tokenizer

    root = pulled("all-MiniLM-L6-v2-onnx")  # our export, a local source in models/
    tok = Tokenizer.from_file(str(root / "tokenizer.json"))
    enc = tok.encode("I am so happy today")
    session = ort.InferenceSession(str(root / "model.onnx"), providers=["CPUExecutionProvider"])
    feeds = {
        "input_ids": np.array([enc.ids], np.int64),
        "attention_mask": np.array([enc.attention_mask], np.int64),
        "token_type_ids": np.array([enc.type_ids], np.int64),
    }
    names = {i.name for i in session.get_inputs()}
    out = session.run(None, {k: v for k, v in feeds.items() if k in names})[0]
    assert out.shape[-1] == 384
