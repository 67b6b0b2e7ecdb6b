"""Shared pieces of the text-path tests (text model, context and fusion workers, quantization)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
FIXTURE_CSV = REPO / "tests/fixtures/meld/dev_sample.csv"


@dataclass(frozen=True)
class TinyModels:
    checkpoint: Path
    fp32: Path
    woq_dq: Path
    woq_integer: Path
    """Folders ``woq_*`` hold model.onnx + tokenizer.json + meta.json (runtime model layout)."""


def build_fusion_head(folder: Path, hidden: int, visual_dim: int = 384, seed: int = 0) -> Path:
    """A small fusion head honouring the runtime contract: text logits + confidence * (visual @ W)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((visual_dim, 7)) * 2.0).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["visual_embedding", "w"], ["corr"]),
        helper.make_node("Unsqueeze", ["visual_confidence", "axis1"], ["conf"]),
        helper.make_node("Mul", ["corr", "conf"], ["scaled"]),
        helper.make_node("Add", ["text_logits", "scaled"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_fusion",
        [
            helper.make_tensor_value_info("text_embedding", TensorProto.FLOAT, ["b", hidden]),
            helper.make_tensor_value_info("text_logits", TensorProto.FLOAT, ["b", 7]),
            helper.make_tensor_value_info("visual_embedding", TensorProto.FLOAT, ["b", visual_dim]),
            helper.make_tensor_value_info("visual_confidence", TensorProto.FLOAT, ["b"]),
        ],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", 7])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(folder / "model.onnx"))
    (folder / "meta.json").write_text(
        '{"labels": ["neutral","surprise","fear","sadness","joy","disgust","anger"]}'
    )
    return folder
