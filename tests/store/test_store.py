"""load() and verify() against real models: the one-line missing error, corruption named by verify,
and a pull that repairs it."""

from __future__ import annotations

from pathlib import Path

import pytest

from emostream.cli import main
from emostream.config import Settings, StoreSettings
from emostream.errors import UserError
from emostream.store import Store, load, load_manifest
from emostream.store.pull import pull


def test_missing_model_is_one_line_naming_the_pull_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(store=StoreSettings(home=str(tmp_path)))
    where = tmp_path / "models" / "silero-vad"
    with pytest.raises(UserError) as info:
        load("silero-vad", settings)
    assert (
        str(info.value)
        == f"model silero-vad is not in the store at {where}: run `emostream models pull silero-vad`"
    )
    monkeypatch.setenv("EMOSTREAM_HOME", str(tmp_path))
    assert main(["models", "path", "silero-vad"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run `emostream models pull silero-vad`" in err
    with pytest.raises(UserError, match="unknown model 'nope'"):
        load("nope", settings)


def test_corruption_is_named_by_verify_and_repaired_by_pull(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store = Store(home=tmp_path, manifest=load_manifest())
    pull(store, "fer-7class")
    path = store.load("fer-7class") / "emotion_model_quantized.tflite"
    data = bytearray(path.read_bytes())
    data[5000] ^= 0xFF
    path.write_bytes(bytes(data))
    monkeypatch.setenv("EMOSTREAM_HOME", str(tmp_path))
    assert main(["models", "verify"]) == 1
    captured = capsys.readouterr()
    assert "fer-7class: emotion_model_quantized.tflite is corrupted" in captured.out
    assert "failed verification (fer-7class)" in captured.err

    path.write_bytes(bytes(data[:-10]))  # a truncated file is caught by load() without re-hashing
    with pytest.raises(
        UserError, match=r"has a damaged emotion_model_quantized.tflite .*models pull fer-7class"
    ):
        store.load("fer-7class")

    assert main(["models", "pull", "fer-7class"]) == 0
    assert main(["models", "verify", "fer-7class"]) == 0
    assert "fer-7class: ok" in capsys.readouterr().out
