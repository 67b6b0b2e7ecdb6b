"""`emostream train quantize`, `emostream eval meld` and `emostream bench quant` on the tiny model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from emostream.cli import main as cli
from emostream.store.files import sha256_file
from emostream.store.manifest import load_manifest

from .helpers import FIXTURE_CSV, REPO, TinyModels


def test_quantize_writes_the_runtime_model_and_its_manifest_entry(
    tiny_models: TinyModels, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from emostream.train.quantize import main

    manifest = tmp_path / "manifest.toml"
    shutil.copy(REPO / "emostream/store/manifest.toml", manifest)
    out, variants = tmp_path / "emostream-text-int8", tmp_path / "variants"
    argv = ["--checkpoint", str(tiny_models.checkpoint), "--out", str(out), "--manifest", str(manifest)]
    argv += ["--calib", "16", "--select", "16"]  # alpha picked on held-out prompts of the calibration CSV
    assert main([*argv, "--variants", str(variants), "--csv", str(FIXTURE_CSV)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["top1_agreement"] >= 0.98 and result["utterances"] == 42
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "model.onnx", "tokenizer.json"]
    assert sorted(p.name for p in variants.iterdir()) == ["dynamic_int8.onnx", "onnx_fp32.onnx", "torch_fp32"]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["quantization"]["kernel"] == "integer" and meta["labels"][0] == "neutral"
    smoothing = meta["quantization"]["smoothing"]
    assert set(smoothing["trials_on_train"]) == {"0.5", "0.6", "0.7", "0.8", "0.9"}
    assert str(smoothing["alpha"]) in smoothing["trials_on_train"]
    entry = load_manifest(manifest).get("emostream-text-int8")
    assert not entry.pending
    for name in ("model.onnx", "tokenizer.json", "meta.json"):
        assert entry.files[name].sha256 == sha256_file(out / name) == result["files"][name]
    assert entry.size == sum(p.stat().st_size for p in out.iterdir())
    other = load_manifest(REPO / "emostream/store/manifest.toml")
    assert set(load_manifest(manifest).models) == set(other.models)  # nothing else touched


def test_eval_meld_prints_one_json_line(tiny_models: TinyModels, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["eval", "meld", "--csv", str(FIXTURE_CSV), "--model", str(tiny_models.woq_dq), "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    r = json.loads(lines[0])
    assert r["utterances"] == 42 and r["utterances_per_s"] > 0
    assert 0 <= r["weighted_f1"] <= 100 and 0 <= r["accuracy"] <= 100
    assert list(r["per_class_f1"]) == ["neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger"]


def test_eval_meld_text_variant_is_scored_and_reported(
    tiny_models: TinyModels, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["eval", "meld", "--csv", str(FIXTURE_CSV), "--model", str(tiny_models.woq_dq), "--json"]
    assert cli(base) == 0 and cli([*base, "--text-variant", "flat"]) == 0
    gold, flat = (json.loads(x) for x in capsys.readouterr().out.strip().splitlines())
    assert gold["text_variant"] == "gold" and flat["text_variant"] == "flat"
    assert gold["utterances"] == flat["utterances"] == 42


def test_eval_meld_transcripts_replace_the_text(
    tiny_models: TinyModels, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from emostream.evaluation.meld import read_meld, text_variant

    rows = [u for d in read_meld(FIXTURE_CSV).dialogues.values() for u in d]
    heard = tmp_path / "asr.jsonl"

    def write(utterances: list) -> None:  # "Whisper" heard the punctuation flattened
        lines = [
            {"dialogue": u.dialogue, "utterance": u.index, "text": text_variant(u.text, "flat")}
            for u in utterances
        ]
        heard.write_text("".join(json.dumps(x) + "\n" for x in lines))

    base = ["eval", "meld", "--csv", str(FIXTURE_CSV), "--model", str(tiny_models.woq_dq), "--json"]
    write(rows)
    assert cli([*base, "--transcripts", str(heard)]) == 0 and cli([*base, "--text-variant", "flat"]) == 0
    asr, flat = (json.loads(x) for x in capsys.readouterr().out.strip().splitlines())
    assert asr["text_variant"] == f"asr:{heard}" and asr["gold_text_no_transcript"] == 0
    assert asr["per_class_f1"] == flat["per_class_f1"] and asr["weighted_f1"] == flat["weighted_f1"]
    write(rows[2:])
    assert cli([*base, "--transcripts", str(heard)]) == 0
    assert json.loads(capsys.readouterr().out)["gold_text_no_transcript"] == 2
    assert cli([*base, "--transcripts", str(heard), "--text-variant", "flat"]) == 1
    assert "leave --text-variant at gold" in capsys.readouterr().err


def test_eval_meld_missing_csv_is_one_line(
    tiny_models: TinyModels, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(["eval", "meld", "--csv", "/nonexistent.csv", "--model", str(tiny_models.woq_dq)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "MELD CSV not found" in err


def test_bench_quant_one_line_per_variant(
    tiny_models: TinyModels, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["bench", "quant", "--csv", str(FIXTURE_CSV), "--checkpoint", str(tiny_models.checkpoint)]
    assert cli([*argv, "--runs", "6", "--limit", "2", "--json"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert [x["variant"] for x in lines] == ["torch_fp32", "onnx_fp32", "dynamic_int8", "woq_int8"]
    keys = {"size_mb", "p50_ms", "p95_ms", "utterances_per_s", "dev_weighted_f1"}
    assert all(keys <= set(x) and x["p95_ms"] >= x["p50_ms"] > 0 for x in lines)
    size = {x["variant"]: x["size_mb"] for x in lines}
    assert size["onnx_fp32"] / size["woq_int8"] >= 3.5
    assert lines[1]["top1_agreement"] == 1.0


def test_bench_quant_requires_a_csv(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli(["bench", "quant", "--checkpoint", "x"])
    assert "--csv" in capsys.readouterr().err
