"""Every ONNX model opens with its own stage's provider setting ([deploy]/[layout]): a stage asked to
run on CUDA on this CPU-only onnxruntime says so in one line instead of silently using the CPU."""

from __future__ import annotations

import os

import pytest

from emostream.config import load_settings
from emostream.errors import UserError
from emostream.inference.encoder import SentenceEncoder
from emostream.inference.onnx import RuntimeOptions
from emostream.inference.text import TextModel

HOME = {k: v for k, v in os.environ.items() if k == "EMOSTREAM_HOME"}  # the store `make test` pulled into


def test_the_vlm_encoder_takes_the_vlm_provider() -> None:
    settings = load_settings(env={**HOME, "EMOSTREAM_VLM_PROVIDER": "cuda"})
    with pytest.raises(UserError, match="provider cuda is not available"):
        SentenceEncoder.from_store(settings.vlm.encoder, settings)
    assert SentenceEncoder.from_store(settings.vlm.encoder, load_settings(env=HOME)).dim == 384


def test_the_text_model_takes_the_context_provider() -> None:
    settings = load_settings(env={**HOME, "EMOSTREAM_CONTEXT_PROVIDER": "cuda"})
    with pytest.raises(UserError, match="provider cuda is not available"):
        TextModel.load("emostream-text-int8", RuntimeOptions.of(settings.context), settings)
