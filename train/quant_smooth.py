"""SmoothQuant-style activation smoothing before the ``integer`` kernel (ONNX graph, no torch).

The integer kernel quantizes each Linear's input per tensor to UINT8. Transformer activations have a few
channels with values 10-100x larger than the rest (LayerNorm outputs, post-GELU), so one per-tensor scale
leaves the other channels a handful of levels. Smoothing moves that range into the weights, exactly:
``X W = (X / s) (s W)`` with ``s_j = max|X_j|^a / max|W_j|^(1-a)`` per input channel ``j``, from
calibration prompts. The graph gets one ``Mul(X, 1/s)`` per distinct Linear input (shared by Q, K and V)
and the weights are scaled by ``s`` before the per-output-channel INT8 quantization, which is unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def linear_inputs(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    """Activation tensor -> the MatMul nodes that multiply it by a 2-D float initializer."""
    inits = {i.name: i for i in model.graph.initializer}
    groups: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        w = inits.get(node.input[1]) if node.op_type == "MatMul" and len(node.input) > 1 else None
        if w is not None and w.data_type == TensorProto.FLOAT and len(w.dims) == 2:
            groups.setdefault(node.input[0], []).append(node)
    return groups


def activation_ranges(
    model: onnx.ModelProto, feeds: Iterable[dict[str, np.ndarray]], names: list[str]
) -> dict[str, np.ndarray]:
    """Per-channel max |x| of each tensor in ``names`` over the calibration feeds (ONNX Runtime, FP32)."""
    from emostream.inference.onnx import RuntimeOptions, session

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for name in names:
        probe.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    sess = session(probe.SerializeToString(), RuntimeOptions.cpu(0), optimize=False)
    ranges: dict[str, np.ndarray] = {}
    for feed in feeds:
        for name, value in zip(names, sess.run(names, feed), strict=True):
            amax = np.abs(value.reshape(-1, value.shape[-1])).max(axis=0)
            ranges[name] = np.maximum(ranges[name], amax) if name in ranges else amax
    return ranges


def smooth(
    model: onnx.ModelProto,
    feeds: Iterable[dict[str, np.ndarray]],
    alpha: float = 0.5,
    ranges: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Rewrite ``model`` in place: scale Linear inputs down and their weights up (FP32-exact).

    ``ranges`` (from :func:`activation_ranges`) skips the calibration pass when trying several alphas."""
    groups = linear_inputs(model)
    if ranges is None:
        ranges = activation_ranges(model, feeds, list(groups))
    inits = {i.name: i for i in model.graph.initializer}
    new_nodes: dict[str, onnx.NodeProto] = {}
    for x, consumers in groups.items():
        weights = [numpy_helper.to_array(inits[n.input[1]]) for n in consumers]
        w_max = np.max([np.abs(w).max(axis=1) for w in weights], axis=0)
        s = np.power(np.maximum(ranges[x], 1e-5), alpha) / np.power(np.maximum(w_max, 1e-5), 1 - alpha)
        s = np.clip(s, 1e-2, 1e2).astype(np.float32)
        for node, w in zip(consumers, weights, strict=True):
            inits[node.input[1]].CopyFrom(
                numpy_helper.from_array((w * s[:, None]).astype(np.float32), node.input[1])
            )
            node.input[0] = x + "_smooth"
        model.graph.initializer.append(numpy_helper.from_array((1.0 / s).astype(np.float32), x + "_inv_s"))
        new_nodes[x] = helper.make_node("Mul", [x, x + "_inv_s"], [x + "_smooth"], name=x + "_smooth")
    ordered: list[onnx.NodeProto] = []
    pending = dict(new_nodes)
    graph_inputs = {i.name for i in model.graph.input}
    for name in list(pending):
        if name in graph_inputs:
            ordered.append(pending.pop(name))
    for node in model.graph.node:
        ordered.append(node)
        for out in node.output:
            if out in pending:
                ordered.append(pending.pop(out))
    del model.graph.node[:]
    model.graph.node.extend(ordered)
    return {"smoothed_inputs": len(groups), "alpha": alpha}
