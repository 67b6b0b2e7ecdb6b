"""``store.home`` from ``--config`` reaches every model load: nothing falls back to the default store."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from emostream.config import Settings, load_settings
from emostream.errors import UserError
from emostream.inference.encoder import SentenceEncoder
from emostream.inference.onnx import RuntimeOptions
from emostream.inference.text import TextModel
from emostream.inference.whisper import WhisperEngine, WhisperOptions
from emostream.ingest.vad import SileroModel
from emostream.store import load
from emostream.workers.face.expression import create_expression_model
from emostream.workers.face.landmarks import FaceLandmarks

LOADS: dict[str, Callable[[Settings], Any]] = {
    "silero-vad": lambda s: SileroModel.shared(s),
    "whisper-tiny.en": lambda s: WhisperEngine.shared(WhisperOptions.from_settings(s.asr), s),
    "emostream-text-int8": lambda s: TextModel.load(s.context.model, RuntimeOptions.of(s.context), s),
    "all-MiniLM-L6-v2-onnx": lambda s: SentenceEncoder.from_store(s.vlm.encoder, s),
    "face-landmarker": lambda s: FaceLandmarks.from_store(s),
    "fer-7class": lambda s: create_expression_model("litert", s),
}


@pytest.fixture
def empty_home(tmp_path: Path) -> Settings:
    config = tmp_path / "emostream.toml"
    config.write_text(f'[store]\nhome = "{tmp_path / "home"}"\n')
    return load_settings(config, env={})


@pytest.mark.parametrize("model", list(LOADS))
def test_every_model_load_reads_store_home_from_the_config(model: str, empty_home: Settings) -> None:
    with pytest.raises(UserError, match=f"model {model} is not in the store at {empty_home.home}/models"):
        LOADS[model](empty_home)


def test_a_model_placed_in_that_home_is_the_one_loaded(empty_home: Settings) -> None:
    shutil.copytree(load("silero-vad", Settings()), empty_home.home / "models" / "silero-vad")
    assert load("silero-vad", empty_home) == empty_home.home / "models" / "silero-vad"
    assert SileroModel.shared(empty_home).session is not None
