"""Text-path fixtures: a tiny randomly initialised text teacher in the [erc] checkpoint format (MiniLM's
real tokenizer from the model store, a 2-layer 64-wide BERT), its FP32 ONNX export and INT8 variants, and a
tiny fusion head built directly in ONNX. Built once per session in a temp dir (a few seconds)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import FIXTURE_CSV, TinyModels


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    from emostream.config import Settings
    from emostream.store import load

    return load("all-MiniLM-L6-v2", Settings())


@pytest.fixture(scope="session")
def tiny_models(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    import json
    import shutil

    from emostream.train import quantize
    from emostream.train.standin import make_standin

    root = tmp_path_factory.mktemp("tiny")
    ckpt = make_standin(minilm_dir, root / "ckpt", tiny=True, seed=3, head_gain=30.0)
    model, _, meta = quantize.load_checkpoint(ckpt)
    fp32 = root / "fp32.onnx"
    quantize.export_fp32(model, fp32)
    dirs = {}
    for kernel in ("dq", "integer"):
        out = root / f"woq_{kernel}"
        out.mkdir()
        calib = quantize.calibration_feeds(ckpt / "tokenizer.json", 128, FIXTURE_CSV, n=16)
        report = quantize.woq_int8(fp32, out / "model.onnx", kernel, quantize.DEFAULT_KEEP_FLOAT, calib)  # type: ignore[arg-type]
        shutil.copy(ckpt / "tokenizer.json", out / "tokenizer.json")
        (out / "meta.json").write_text(json.dumps({**meta, "quantization": report}))
        dirs[kernel] = out
    return TinyModels(ckpt, fp32, dirs["dq"], dirs["integer"])
