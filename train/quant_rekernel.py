"""Re-kernel a shipped INT8 text model for GPUs: DynamicQuantizeMatMul -> DequantizeLinear + MatMul.

The shipped ``emostream-text-int8`` runs its Linears on ONNX Runtime's DynamicQuantizeMatMul, a CPU-only
contrib kernel: under the CUDA or TensorRT provider those nodes fall back to the CPU. This rewrite keeps
the very same INT8 weights, per-channel scales and smoothing (exact in FP32) and only changes how they
run: each integer MatMul becomes ``DequantizeLinear(W_q, scale, zp, axis=1) -> MatMul`` on FP
activations, the pure Q/DQ weight-only graph ``--kernel dq`` builds from a checkpoint. The result uses
only standard ONNX operators, so CUDA runs it and TensorRT takes the DQ weights with FP16 activations.
Why not rebuild from FP32: the [erc] checkpoint (train/runs/text-main/best) is not committed.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import helper

CONTRIB = "com.microsoft"


def to_qdq(model: onnx.ModelProto) -> int:
    """Rewrite ``model`` in place; returns how many integer MatMuls were converted."""
    nodes: list[onnx.NodeProto] = []
    converted = 0
    for node in model.graph.node:
        if node.op_type != "DynamicQuantizeMatMul" or node.domain != CONTRIB:
            nodes.append(node)
            continue
        a, w_q, w_scale, w_zp, *rest = list(node.input)
        bias = rest[0] if rest and rest[0] else ""
        weight = f"{node.name}_w_dq"
        nodes.append(
            helper.make_node(
                "DequantizeLinear", [w_q, w_scale, w_zp], [weight], name=f"{node.name}_dq", axis=1
            )
        )
        out = node.output[0]
        if bias:
            nodes.append(helper.make_node("MatMul", [a, weight], [f"{out}_nobias"], name=node.name))
            nodes.append(helper.make_node("Add", [f"{out}_nobias", bias], [out], name=f"{node.name}_bias"))
        else:
            nodes.append(helper.make_node("MatMul", [a, weight], [out], name=node.name))
        converted += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    if not any(n.domain == CONTRIB for n in model.graph.node):
        keep = [o for o in model.opset_import if o.domain != CONTRIB]
        del model.opset_import[:]
        model.opset_import.extend(keep)
    onnx.checker.check_model(model)
    return converted


def contrib_ops(path: Path) -> list[str]:
    """Operators outside the standard ONNX domain (those CUDA/TensorRT may not run)."""
    model = onnx.load(str(path), load_external_data=False)
    return sorted({n.op_type for n in model.graph.node if n.domain not in ("", "ai.onnx")})
