"""Weight-only INT8 (DDVLM) as an ONNX graph rewrite: no torch here, only onnx + numpy.

Every weight matrix of an exported FP32 graph (``MatMul``/``Gemm`` with an initializer operand, i.e. every
``nn.Linear``) is stored as symmetric INT8 with one scale per output channel, ``scale_j = max|W_j| / 127``
(zero point 0). Embedding tables (``Gather`` from a float initializer) get one scale per row, which is what
brings MiniLM from 87 MB to ~23 MB: the 30522 x 384 word table is half of the model. LayerNorm, softmax and
every activation stay FP32. Two ways to run the INT8 weights, chosen by ``kernel``:

``dq``
    ``DequantizeLinear(W_q, scale, axis=1) -> MatMul``: standard ONNX, runs on every execution provider
    (TensorRT turns the Q/DQ pattern into INT8 kernels; CPU dequantizes and runs the FP32 GEMM).
``integer``
    ``com.microsoft.DynamicQuantizeMatMul``: the same INT8 weights times activations quantized per tensor
    to UINT8 on the fly, INT32 accumulation (VNNI/AMX). The only kernel here that cuts the arithmetic of
    batch-1 x 128-token GEMMs, which are compute-bound: on this CPU it is ~2x faster than FP32 while the
    weight-only kernels are not faster at all (measured in emostream/train/quantize.py's docstring).
``nbits``
    ``com.microsoft.MatMulNBits`` with ``bits=8``: ONNX Runtime's weight-only kernel. The per-channel scale
    is replicated over the K blocks, so the arithmetic is the same per-channel scheme.
    ``accuracy_level=4`` lets the CPU kernel quantize activations to INT8 per block and use VNNI/AMX.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

Kernel = Literal["dq", "nbits", "integer"]
QMAX = 127.0


def channel_scales(w: np.ndarray, axis: int) -> np.ndarray:
    """``max|w| / 127`` over every dim except ``axis`` (an all-zero channel gets scale 1)."""
    dims = tuple(d for d in range(w.ndim) if d != axis)
    amax = np.abs(w).max(axis=dims).astype(np.float32)
    return np.where(amax > 0, amax / QMAX, 1.0).astype(np.float32)


def quantize_symmetric(w: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-channel INT8 of ``w`` along ``axis``: (int8 values, float32 scales)."""
    scale = channel_scales(w, axis)
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip(np.rint(w / scale.reshape(shape)), -QMAX, QMAX).astype(np.int8)
    return q, scale


@dataclass
class WoqReport:
    """What the rewrite touched: counts and bytes before/after."""

    linears: int = 0
    embeddings: int = 0
    float_bytes: int = 0
    int8_bytes: int = 0
    skipped: list[str] = field(default_factory=list)


class _Rewriter:
    def __init__(
        self,
        model: onnx.ModelProto,
        kernel: Kernel,
        block_size: int,
        accuracy_level: int,
        keep_float_input: tuple[str, ...],
    ) -> None:
        self.model = model
        self.keep_float_input = keep_float_input
        self.graph = model.graph
        self.kernel = kernel
        self.block_size = block_size
        self.accuracy_level = accuracy_level
        self.inits = {i.name: i for i in self.graph.initializer}
        self.consumers: dict[str, int] = {}
        for node in self.graph.node:
            for name in node.input:
                self.consumers[name] = self.consumers.get(name, 0) + 1
        self.new_inits: list[TensorProto] = []
        self.dq_cache: dict[str, str] = {}
        self.report = WoqReport()

    def float_init(self, name: str, ndim: int) -> np.ndarray | None:
        init = self.inits.get(name)
        if init is None or init.data_type != TensorProto.FLOAT or len(init.dims) != ndim:
            return None
        return numpy_helper.to_array(init)

    def add_init(self, array: np.ndarray, name: str) -> str:
        self.new_inits.append(numpy_helper.from_array(array, name))
        return name

    def run(self) -> WoqReport:
        nodes: list[onnx.NodeProto] = []
        for node in self.graph.node:
            if node.op_type == "MatMul":
                nodes.extend(self.matmul(node))
            elif node.op_type == "Gemm":
                nodes.extend(self.gemm(node))
            elif node.op_type == "Gather":
                nodes.extend(self.gather(node))
            else:
                nodes.append(node)
        used = {name for node in nodes for name in node.input}
        keep = [i for i in self.graph.initializer if i.name in used]
        del self.graph.initializer[:]
        self.graph.initializer.extend(keep + self.new_inits)
        del self.graph.node[:]
        self.graph.node.extend(nodes)
        if self.kernel != "dq" and not any(o.domain == "com.microsoft" for o in self.model.opset_import):
            self.model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
        return self.report

    def matmul(self, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        w = self.float_init(node.input[1], 2)
        if w is None:
            return [node]
        return self.linear(node.name, node.input[0], node.input[1], w, node.output[0])

    def gemm(self, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        w = self.float_init(node.input[1], 2)
        plain = (
            attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0 and not attrs.get("transA", 0)
        )
        if w is None or not plain:
            self.report.skipped.append(node.name)
            return [node]
        if attrs.get("transB", 0):
            w = np.ascontiguousarray(w.T)
        if len(node.input) < 3 or not node.input[2]:
            return self.linear(node.name, node.input[0], node.input[1] + "_kn", w, node.output[0])
        mid = node.output[0] + "_nobias"
        out = self.linear(node.name, node.input[0], node.input[1] + "_kn", w, mid)
        return [*out, helper.make_node("Add", [mid, node.input[2]], node.output, name=node.name + "_bias")]

    def linear(self, name: str, a: str, wname: str, w: np.ndarray, out: str) -> list[onnx.NodeProto]:
        """``a @ w`` with ``w`` [K, N] stored as INT8 per output channel (axis 1)."""
        self.report.linears += 1
        self.report.float_bytes += w.size * 4
        q, scale = quantize_symmetric(w, axis=1)
        if self.kernel == "nbits":
            return [self.nbits(name, a, wname, q, scale, out)]
        if self.kernel == "integer" and not any(re.search(p, name) for p in self.keep_float_input):
            return [self.integer(name, a, wname, q, scale, out)]
        if wname not in self.dq_cache:
            self.report.int8_bytes += q.size + scale.size * 4
            qn = self.add_init(q, wname + "_q")
            sn = self.add_init(scale, wname + "_scale")
            zn = self.add_init(np.zeros_like(scale, dtype=np.int8), wname + "_zp")
            self.dq_cache[wname] = wname + "_dq"
            dq = helper.make_node(
                "DequantizeLinear", [qn, sn, zn], [wname + "_dq"], name=name + "_dq", axis=1
            )
            return [dq, helper.make_node("MatMul", [a, wname + "_dq"], [out], name=name)]
        return [helper.make_node("MatMul", [a, self.dq_cache[wname]], [out], name=name)]

    def nbits(
        self, name: str, a: str, wname: str, q: np.ndarray, scale: np.ndarray, out: str
    ) -> onnx.NodeProto:
        k, n = q.shape
        bs = self.block_size
        blocks = -(-k // bs)
        padded = np.zeros((blocks * bs, n), dtype=np.int16)
        padded[:k] = q
        packed = (padded.T.reshape(n, blocks, bs) + 128).astype(np.uint8)
        scales = np.repeat(scale[:, None], blocks, axis=1).astype(np.float32)
        zps = np.full((n, blocks), 128, dtype=np.uint8)
        self.report.int8_bytes += packed.size + scales.size * 4 + zps.size
        inputs = [
            a,
            self.add_init(packed, wname + "_q8"),
            self.add_init(scales, wname + "_scales"),
            self.add_init(zps, wname + "_zp8"),
        ]
        return helper.make_node(
            "MatMulNBits",
            inputs,
            [out],
            name=name,
            domain="com.microsoft",
            K=k,
            N=n,
            bits=8,
            block_size=bs,
            accuracy_level=self.accuracy_level,
        )

    def integer(
        self, name: str, a: str, wname: str, q: np.ndarray, scale: np.ndarray, out: str
    ) -> onnx.NodeProto:
        """INT8 weights x dynamically quantized UINT8 activations (per tensor), INT32 accumulate."""
        self.report.int8_bytes += q.size + scale.size * 5
        inputs = [
            a,
            self.add_init(q, wname + "_q"),
            self.add_init(scale, wname + "_scale"),
            self.add_init(np.zeros_like(scale, dtype=np.int8), wname + "_zp"),
        ]
        return helper.make_node("DynamicQuantizeMatMul", inputs, [out], name=name, domain="com.microsoft")

    def gather(self, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        """Embedding lookup from an INT8 table: gather rows and their scales, then multiply."""
        table = self.float_init(node.input[0], 2)
        axis = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"), 0)
        if table is None or axis != 0 or self.consumers.get(node.input[0], 0) != 1:
            return [node]
        self.report.embeddings += 1
        self.report.float_bytes += table.size * 4
        q, scale = quantize_symmetric(table, axis=0)
        self.report.int8_bytes += q.size + scale.size * 4
        tn, idx = node.input[0], node.input[1]
        qn = self.add_init(q, tn + "_q")
        sn = self.add_init(scale.reshape(-1, 1), tn + "_scale")
        out = node.output[0]
        return [
            helper.make_node("Gather", [qn, idx], [out + "_q"], name=node.name + "_q", axis=0),
            helper.make_node(
                "Cast", [out + "_q"], [out + "_f"], name=node.name + "_cast", to=TensorProto.FLOAT
            ),
            helper.make_node("Gather", [sn, idx], [out + "_s"], name=node.name + "_s", axis=0),
            helper.make_node("Mul", [out + "_f", out + "_s"], [out], name=node.name + "_mul"),
        ]


def weight_only_int8(
    model: onnx.ModelProto,
    kernel: Kernel = "dq",
    block_size: int = 128,
    accuracy_level: int = 0,
    keep_float_input: tuple[str, ...] = (),
) -> WoqReport:
    """Rewrite ``model`` in place to DDVLM weight-only INT8; return what was quantized.

    With ``kernel="integer"``, Linears whose node name matches one of the regular expressions
    ``keep_float_input`` use ``dq`` instead: the layers whose inputs (post-GELU, heavy-tailed) a per-tensor
    UINT8 activation scale crushes.
    """
    if block_size < 16 or block_size & (block_size - 1):
        raise ValueError(f"block_size must be a power of two >= 16, got {block_size}")
    return _Rewriter(model, kernel, block_size, accuracy_level, keep_float_input).run()
