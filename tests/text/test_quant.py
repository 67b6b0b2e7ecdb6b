"""DDVLM weight-only INT8: the scheme itself, the rewritten graph, and INT8 vs FP32 agreement."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

from emostream.evaluation.meld import read_meld
from emostream.inference.dialogue import meld_prompts
from emostream.inference.text import TextModel
from emostream.train.quant_graph import quantize_symmetric

from .helpers import FIXTURE_CSV, TinyModels


def test_per_output_channel_scales_are_max_abs_over_127() -> None:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((48, 5)).astype(np.float32) * np.array([0.01, 1, 5, 0, 100], np.float32)
    q, scale = quantize_symmetric(w, axis=1)
    assert q.dtype == np.int8 and scale.shape == (5,)
    np.testing.assert_allclose(scale[[0, 1, 2, 4]], np.abs(w).max(axis=0)[[0, 1, 2, 4]] / 127, rtol=1e-6)
    assert scale[3] == 1.0 and not q[:, 3].any()  # an all-zero channel stays zero
    assert np.abs(q).max() <= 127 and (np.abs(q).max(axis=0)[[0, 1, 2, 4]] == 127).all()
    err = np.abs(q.astype(np.float32) * scale - w)
    assert (err <= scale / 2 + 1e-6).all()  # round-to-nearest: at most half a step per weight


def _prompts(model: TextModel) -> list:  # type: ignore[type-arg]
    return [p for d in read_meld(FIXTURE_CSV).dialogues.values() for p in meld_prompts(model.builder, d)]


def test_woq_graph_stores_every_linear_and_embedding_as_int8(tiny_models: TinyModels) -> None:
    fp32 = onnx.load(str(tiny_models.fp32))
    woq = onnx.load(str(tiny_models.woq_dq / "model.onnx"))
    n_linear = sum(
        1
        for n in fp32.graph.node
        if n.op_type in ("MatMul", "Gemm") and n.input[1] in {i.name for i in fp32.graph.initializer}
    )
    assert n_linear == 2 * 6 + 1  # 2 layers x (q, k, v, o, ffn in, ffn out) + the head
    inits = {i.name: i for i in woq.graph.initializer}
    big_float = [
        i.name for i in woq.graph.initializer if i.data_type == TensorProto.FLOAT and len(i.dims) == 2
    ]
    assert big_float == [n for n in big_float if n.endswith("_scale")]  # only per-row embedding scales
    dq = [n for n in woq.graph.node if n.op_type == "DequantizeLinear"]
    assert len(dq) == n_linear
    for node in dq:
        assert inits[node.input[0]].data_type == TensorProto.INT8
        assert next(a.i for a in node.attribute if a.name == "axis") == 1  # per output channel
    ln = [n for n in woq.graph.node if n.op_type == "LayerNormalization"]
    assert len(ln) == 2 * 2 + 1
    for node in ln:  # LayerNorm keeps FP32 parameters
        assert all(inits[x].data_type == TensorProto.FLOAT for x in node.input[1:] if x in inits)
    meta = json.loads((tiny_models.woq_dq / "meta.json").read_text())
    assert meta["quantization"]["linears"] == n_linear and meta["quantization"]["embeddings"] == 3
    ratio = tiny_models.fp32.stat().st_size / (tiny_models.woq_dq / "model.onnx").stat().st_size
    assert ratio >= 3.5


@pytest.mark.parametrize("kernel", ["dq", "integer"])
def test_int8_agrees_with_fp32_on_the_fixture(tiny_models: TinyModels, kernel: str) -> None:
    folder: Path = getattr(tiny_models, f"woq_{kernel}")
    ref = TextModel.from_files(tiny_models.fp32, tiny_models.checkpoint / "tokenizer.json")
    test = TextModel.from_dir(folder)
    prompts = _prompts(ref)
    assert len(prompts) == 42
    e_ref, l_ref = (np.concatenate(x) for x in zip(*(ref.run([p]) for p in prompts), strict=True))
    e_q, l_q = (np.concatenate(x) for x in zip(*(test.run([p]) for p in prompts), strict=True))
    agreement = (l_ref.argmax(1) == l_q.argmax(1)).mean()
    cos = (e_ref * e_q).sum(1) / np.linalg.norm(e_ref, axis=1) / np.linalg.norm(e_q, axis=1)
    assert agreement >= 0.98, f"top-1 agreement {agreement:.3f}"
    assert cos.min() > 0.99
    assert len(set(l_ref.argmax(1))) > 1  # the check is not trivially met by a constant prediction


def test_fp32_onnx_matches_pytorch(tiny_models: TinyModels) -> None:
    import torch

    from emostream.train.text_model import load_hf

    model, _, _ = load_hf(tiny_models.checkpoint)
    ort_model = TextModel.from_files(tiny_models.fp32, tiny_models.checkpoint / "tokenizer.json")
    for p in _prompts(ort_model)[:8]:
        ids = torch.tensor([p.ids])
        with torch.no_grad():
            h, logits = model(ids, torch.ones_like(ids), torch.tensor([p.mask_pos]))
        e, lo = ort_model.run([p])
        np.testing.assert_allclose(lo[0], logits[0].numpy(), atol=2e-4)
        np.testing.assert_allclose(e[0], h[0].numpy(), atol=2e-4)


def test_batched_run_equals_single_runs(tiny_models: TinyModels) -> None:
    model = TextModel.from_dir(tiny_models.woq_dq)
    prompts = _prompts(model)[:6]
    _, batched = model.run(prompts)
    single = np.stack([model.run([p])[1][0] for p in prompts])
    np.testing.assert_allclose(batched, single, atol=1e-4)


def test_scales_in_graph_match_the_source_weights(tiny_models: TinyModels) -> None:
    fp32 = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(tiny_models.fp32)).graph.initializer}
    woq = {
        i.name: numpy_helper.to_array(i)
        for i in onnx.load(str(tiny_models.woq_dq / "model.onnx")).graph.initializer
    }
    linears = embeddings = 0
    for name, w in fp32.items():
        if w.ndim != 2 or name + "_q" not in woq:
            continue
        scale, q = woq[name + "_scale"], woq[name + "_q"].astype(np.float32)
        if "embeddings" in name:  # tables: one scale per row
            amax = np.abs(w).max(axis=1)
            np.testing.assert_allclose(scale[:, 0], np.where(amax > 0, amax / 127, 1.0), rtol=1e-6)
            np.testing.assert_allclose(q * scale, w, atol=float(scale.max()) / 2 + 1e-7)
            embeddings += 1
        else:  # Linear weights [K, N]: one scale per output channel
            np.testing.assert_allclose(scale, np.abs(w).max(axis=0) / 127, rtol=1e-6)
            np.testing.assert_allclose(q * scale, w, atol=float(scale.max()) / 2 + 1e-7)
            linears += 1
    assert (linears, embeddings) == (12, 3)


def test_fusion_checkpoint_exports_to_the_runtime_contract(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    from emostream.inference.fusion import FusionHead
    from emostream.train.fusion import FusedModel
    from emostream.train.modules import ResidualFusion, VisualStudent
    from emostream.train.quantize import main

    torch.manual_seed(0)
    model = FusedModel(VisualStudent(384, 64, 96, dropout=0.0), ResidualFusion(64, 64)).eval()
    with torch.no_grad():
        model.fusion.alpha.fill_(1.0)  # a visible correction, so the check is not just z_t
        model.fusion.correct.weight.mul_(5)
    ckpt = tmp_path / "fusion"
    ckpt.mkdir()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(ckpt / "fusion.safetensors"))
    assert main(["--checkpoint", str(ckpt), "--out", str(tmp_path / "out"), "--manifest", ""]) == 0
    head = FusionHead.from_dir(tmp_path / "out")
    assert head.visual_dim == 384
    rng = np.random.default_rng(1)
    worst, corrected = 0.0, 0
    for _ in range(24):
        h, z = rng.standard_normal(64).astype(np.float32), rng.standard_normal(7).astype(np.float32)
        v = (h @ rng.standard_normal((64, 384)) * 0.2 + rng.standard_normal(384)).astype(np.float32)
        got = head.fuse(h.tolist(), z.tolist(), v.tolist(), 0.9)
        with torch.no_grad():
            want, _ = model({"h": torch.tensor(h[None]), "logits": torch.tensor(z[None]),
                             "emb": torch.tensor(v[None]), "confidence": torch.tensor([0.9])})  # fmt: skip
        correction = float(np.abs(want[0].numpy() - z).max())
        # INT8 weights: a few percent of the visual correction (plus noise in cos(h_t, h_v) near 0)
        np.testing.assert_allclose(got, want[0].numpy(), atol=0.03)
        worst = max(worst, float(np.abs(got - want[0].numpy()).max()))
        corrected += correction > 0.1  # cos(h_t, h_v) <= 0 adds no correction, by design
    assert corrected >= 5, "the visual correction should change the logits"
    assert worst > 0  # the head really runs INT8 weights, not a copy of FP32
    assert not head.usable([0.0] * 10) and not head.usable(None) and head.usable([0.1] * 384)
    assert head.text_dim == 64 and head.usable([0.1] * 384, [0.0] * 64)
    assert not head.usable([0.1] * 384, [0.0] * 768)  # trained on another text model's embeddings


def test_missing_execution_provider_is_one_clear_error(tiny_models: TinyModels) -> None:
    from emostream.errors import UserError
    from emostream.inference.onnx import RuntimeOptions

    with pytest.raises(UserError, match="provider cuda is not available here") as err:
        TextModel.from_dir(tiny_models.woq_dq, RuntimeOptions(provider="cuda", threads=1))
    assert "\n" not in str(err.value) and "onnxruntime-gpu" in str(err.value)
    with pytest.raises(UserError, match="unknown provider 'npu'"):
        TextModel.from_dir(tiny_models.woq_dq, RuntimeOptions(provider="npu", threads=1))
    with pytest.raises(UserError, match="not a runtime text model"):
        TextModel.from_dir(tiny_models.checkpoint)


def test_smoothing_is_exact_in_fp32_and_shares_one_scale_per_input(
    tiny_models: TinyModels, tmp_path: Path
) -> None:
    from emostream.train.quant_smooth import linear_inputs, smooth
    from emostream.train.quantize import calibration_feeds

    model = onnx.load(str(tiny_models.fp32))
    groups = linear_inputs(model)
    assert sorted(len(v) for v in groups.values())[-1] == 3  # Q, K and V read the same LayerNorm output
    feeds = calibration_feeds(tiny_models.checkpoint / "tokenizer.json", 128, FIXTURE_CSV, n=8)
    report = smooth(model, feeds, alpha=0.7)
    assert report["smoothed_inputs"] == len(groups) == 2 * 4  # per layer: qkv, attn out, ffn in, ffn out
    onnx.save(model, str(tmp_path / "smoothed.onnx"))
    ref = TextModel.from_files(tiny_models.fp32, tiny_models.checkpoint / "tokenizer.json")
    got = TextModel.from_files(tmp_path / "smoothed.onnx", tiny_models.checkpoint / "tokenizer.json")
    for p in _prompts(ref)[:6]:
        np.testing.assert_allclose(got.run([p])[1], ref.run([p])[1], atol=1e-4)


def test_rekernel_refuses_to_overwrite_its_source(
    tiny_models: TinyModels, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from emostream.cli import main as cli

    src = tmp_path / "int8"
    shutil.copytree(tiny_models.woq_dq, src)
    before = (src / "model.onnx").read_bytes()
    argv = [
        "train",
        "quantize",
        "--checkpoint",
        str(src),
        "--kernel",
        "dq",
        "--out",
        str(src),
        "--manifest",
        "",
    ]
    assert cli(argv) == 1
    assert "would overwrite its source" in capsys.readouterr().err
    assert (src / "model.onnx").read_bytes() == before
