"""The GPU text model: the shipped INT8 weights re-kerneled to standard ONNX ops, picked for GPU providers."""

from __future__ import annotations

import re

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

from emostream.train.quant_rekernel import contrib_ops

from .compose import REPO
from .test_compose import dockerfile_env

INT8 = REPO / "models/emostream-text-int8/model.onnx"
QDQ = REPO / "models/emostream-text-qdq/model.onnx"


def test_qdq_has_only_standard_operators_and_the_same_int8_weights() -> None:
    assert contrib_ops(INT8) == ["DynamicQuantizeMatMul"]
    assert contrib_ops(QDQ) == [], "CUDA/TensorRT run every node (no CPU-only contrib kernel)"
    q, int8 = onnx.load(str(QDQ)), [n.op_type for n in onnx.load(str(INT8)).graph.node]
    ops = [n.op_type for n in q.graph.node]
    # every integer-kernel MatMul becomes DequantizeLinear -> MatMul; the DQ nodes already there stay
    assert ops.count("DequantizeLinear") == int8.count("DynamicQuantizeMatMul") + int8.count(
        "DequantizeLinear"
    )
    assert int8.count("DynamicQuantizeMatMul") >= 12 and "DynamicQuantizeMatMul" not in ops
    src = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(INT8)).graph.initializer}
    for init in q.graph.initializer:
        if init.name.endswith("_q"):
            assert init.data_type == onnx.TensorProto.INT8
            np.testing.assert_array_equal(numpy_helper.to_array(init), src[init.name])


def test_qdq_agrees_with_the_shipped_model_on_cpu() -> None:
    rng = np.random.default_rng(0)
    sessions = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (INT8, QDQ)]
    agree, n = 0, 16
    for _ in range(n):
        ids = np.concatenate([[101], rng.integers(1000, 20000, 40), [103, 102]]).astype(np.int64)[None]
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "mask_pos": np.array([41], np.int64)}
        a, b = (s.run(["logits"], feed)[0] for s in sessions)
        assert np.isfinite(b).all()
        assert np.abs(a - b).max() < 1.0, "same weights: only the activation rounding differs"
        agree += int(a.argmax() == b.argmax())
    assert agree >= n - 2, f"top-1 agreement {agree}/{n}"


def test_gpu_images_pick_the_qdq_model_for_their_provider() -> None:
    for path in (REPO / "deploy/Dockerfile.cuda", REPO / "deploy/jetson/Dockerfile"):
        env = dockerfile_env(path)
        assert env["EMOSTREAM_CONTEXT_PROVIDER"] in ("cuda", "tensorrt")
        model = env["EMOSTREAM_CONTEXT_MODEL"]
        assert contrib_ops(REPO / "models" / model / "model.onnx") == [], f"{path.name}: {model}"
        assert re.search(rf"MODELS=\"[^\"]*\b{model}\b", path.read_text()), f"{path.name} bakes {model}"


def test_the_gpu_providers_load_the_qdq_variant() -> None:
    from emostream.inference.text import model_for_provider

    assert model_for_provider("emostream-text-int8", "cpu") == "emostream-text-int8"
    for provider in ("cuda", "tensorrt"):
        assert model_for_provider("emostream-text-int8", provider) == "emostream-text-qdq"
        assert model_for_provider("my-own-model", provider) == "my-own-model"
