"""Fixtures for the training tests: the real MiniLM tokenizer/encoder from the model store, the MELD fixture."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

FIXTURE_CSV = Path(__file__).resolve().parents[1] / "fixtures" / "meld" / "dev_sample.csv"


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The store's all-MiniLM-L6-v2 (fails loudly with the pull command when missing)."""
    from emostream.config import Settings
    from emostream.store import load

    return load("all-MiniLM-L6-v2", Settings())


@pytest.fixture(scope="session")
def tokenizer(minilm_dir: Path) -> Any:
    from emostream.train.text_model import load_tokenizer

    return load_tokenizer(minilm_dir)


@pytest.fixture()
def meld_csv() -> Path:
    assert FIXTURE_CSV.is_file(), FIXTURE_CSV
    return FIXTURE_CSV
