"""Native start-up chatter is dropped, real stderr output survives, and no shutdown traceback leaks."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from emostream.inference.native_log import quiet_native_stderr


def test_noise_dropped_other_lines_replayed(capfd: pytest.CaptureFixture[str]) -> None:
    with quiet_native_stderr():
        os.write(2, b"WARNING: Logging before InitGoogle() is written to STDERR\n")
        os.write(2, b"W0000 00:00:1795331228.926525   24202 face_landmarker_graph.cc:181] Sets xnnpack.\n")
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        os.write(2, b"E1122 real failure from another thread\n")
    err = capfd.readouterr().err
    assert err.splitlines() == ["E1122 real failure from another thread"]
    os.write(2, b"W0000 00:00:1.0 1 x.cc:1] after the block\n")  # outside the block nothing is filtered
    assert "after the block" in capfd.readouterr().err


def test_face_models_load_and_exit_silently() -> None:
    code = (
        "import numpy as np\n"
        "from emostream.config import Settings\n"
        "from emostream.store import load\n"
        "from emostream.workers.face.landmarks import FaceLandmarks\n"
        "from emostream.workers.face.expression import LiteRTExpression\n"
        "lm = FaceLandmarks.from_store(Settings())\n"  # left open on purpose: closed at exit without a traceback
        "LiteRTExpression(load('fer-7class', Settings()) / 'emotion_model_quantized.tflite')\n"
        "print(len(lm.detect(np.zeros((96, 96, 3), np.uint8))))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "0"
    assert proc.stderr.strip() == ""
