"""Silero VAD v6 run directly in ONNX Runtime (no torch): speech probability per 32 ms of 16 kHz audio.

The model takes a 512-sample window prefixed by the last 64 samples of the previous window (its
context) and a recurrent state ``[2, 1, 128]``. One :class:`SileroModel` (the ONNX session, thread-safe)
is shared by every participant of the process; each participant's stream has its own
:class:`SileroVad` holding the state, the context and any samples short of a full window.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import numpy.typing as npt

from emostream.config import Settings
from emostream.inference.onnx import RuntimeOptions, session
from emostream.ingest.audio import SAMPLE_RATE, Audio

WINDOW = 512
"""Samples per VAD decision (32 ms at 16 kHz)."""
CONTEXT = 64
"""Samples of the previous window the model sees in front of each window."""
WINDOW_S = WINDOW / SAMPLE_RATE


class SileroModel:
    """The ONNX session (one per process, shared by all participants)."""

    _shared: dict[str, SileroModel] = {}
    _lock = threading.Lock()

    def __init__(self, path: str | Path, threads: int = 1) -> None:
        self.session = session(path, RuntimeOptions.cpu(threads))
        self._sr = np.array(SAMPLE_RATE, dtype=np.int64)

    @classmethod
    def shared(cls, settings: Settings, path: str | Path | None = None) -> SileroModel:
        """The process-wide instance for ``path`` (default: ``silero-vad`` from the store of ``settings``)."""
        if path is None:
            from emostream.store import load

            path = load("silero-vad", settings) / "silero_vad.onnx"
        key = str(path)
        with cls._lock:
            model = cls._shared.get(key)
            if model is None:
                model = cls._shared[key] = cls(path)
            return model

    def step(
        self, window: npt.NDArray[np.float32], state: npt.NDArray[np.float32]
    ) -> tuple[float, npt.NDArray[np.float32]]:
        """Speech probability of one ``CONTEXT + WINDOW`` input and the next state."""
        out, new_state = self.session.run(None, {"input": window[None, :], "state": state, "sr": self._sr})
        return float(out[0, 0]), new_state


class SileroVad:
    """One stream's VAD: feed 16 kHz audio of any length, get one probability per full 512-sample window."""

    def __init__(self, model: SileroModel) -> None:
        self.model = model
        self.reset()

    def reset(self) -> None:
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)

    @property
    def pending(self) -> int:
        """Samples waiting for a full window."""
        return int(self._pending.size)

    def __call__(self, audio: Audio) -> npt.NDArray[np.float32]:
        """Probabilities of the full windows completed by ``audio`` (leftover samples are kept)."""
        return self.process(audio)[0]

    def process(self, audio: Audio) -> tuple[npt.NDArray[np.float32], Audio]:
        """(probabilities, the ``len * WINDOW`` samples they were computed on), leftover samples kept."""
        buf = np.concatenate([self._pending, audio]) if self._pending.size else audio
        n = buf.size // WINDOW
        probs = np.empty(n, dtype=np.float32)
        for i in range(n):
            chunk = buf[i * WINDOW : (i + 1) * WINDOW]
            x = np.concatenate([self._context, chunk])
            probs[i], self._state = self.model.step(x, self._state)
            self._context = chunk[-CONTEXT:]
        self._pending = np.array(buf[n * WINDOW :], dtype=np.float32)
        return probs, buf[: n * WINDOW]
