"""The one ONNX Runtime session factory: every model (text teacher, fusion head, sentence encoder,
Silero VAD) opens its session here, with the provider and thread count of the stage that runs it.

Options are built from that stage's settings section (``[context]``, ``[fusion]``, ...) by
:meth:`RuntimeOptions.of`, so no stage borrows another's provider or threads and no default is
declared twice.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from emostream.errors import UserError

PROVIDERS = ("cpu", "cuda", "tensorrt")


class OnnxSection(Protocol):
    """A settings section that says how its stage runs ONNX models."""

    @property
    def provider(self) -> str: ...
    @property
    def threads(self) -> int: ...
    @property
    def trt_cache_dir(self) -> str: ...


@dataclass(frozen=True)
class RuntimeOptions:
    """How ONNX Runtime runs one stage's model (the values come from its settings section)."""

    provider: str
    """``cpu``, ``cuda`` or ``tensorrt`` (needs onnxruntime-gpu; falls back to CPU per node)."""
    threads: int
    """Intra-op threads on CPU (0: ONNX Runtime's default, every core; offline tools only)."""
    trt_cache_dir: str = ""
    """TensorRT engine cache, so engines are built once per machine and model."""
    fp16: bool = True
    """TensorRT: FP16 activations (GPU); CPU always computes activations in FP32."""

    @classmethod
    def of(cls, section: OnnxSection) -> RuntimeOptions:
        """The options of the stage whose settings section is ``section`` (e.g. ``settings.fusion``)."""
        return cls(provider=section.provider, threads=section.threads, trt_cache_dir=section.trt_cache_dir)

    @classmethod
    def cpu(cls, threads: int) -> RuntimeOptions:
        """Plain CPU with ``threads`` intra-op threads (tools, tests and CPU-only models such as VAD)."""
        return cls(provider="cpu", threads=threads)


def providers_for(options: RuntimeOptions) -> list[Any]:
    """Execution-provider list for ``options``; one clear line when the provider is not installed."""
    import onnxruntime as ort

    if options.provider not in PROVIDERS:
        raise UserError(f"unknown provider {options.provider!r}: use one of {', '.join(PROVIDERS)}")
    wanted = {
        "cpu": "CPUExecutionProvider",
        "cuda": "CUDAExecutionProvider",
        "tensorrt": "TensorrtExecutionProvider",
    }[options.provider]
    available = ort.get_available_providers()
    if wanted not in available:
        raise UserError(
            f"ONNX Runtime provider {options.provider} is not available here (have {', '.join(available)}): "
            'install onnxruntime-gpu (`pip install emostream[gpu]`) or set the stage\'s provider = "cpu"'
        )
    if options.provider == "tensorrt":
        cache = os.path.expanduser(options.trt_cache_dir or "~/.cache/emostream/trt")
        os.makedirs(cache, exist_ok=True)
        trt = {
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": cache,
            "trt_fp16_enable": options.fp16,
        }
        return [("TensorrtExecutionProvider", trt), "CUDAExecutionProvider", "CPUExecutionProvider"]
    if options.provider == "cuda":
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def session(model: Path | str | bytes, options: RuntimeOptions, *, optimize: bool = True) -> Any:
    """An InferenceSession (from a file or serialized bytes) with threads bounded and no busy-spinning
    (other stages share the cores). ``optimize=False`` keeps the graph as written (calibration probes)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if options.threads > 0:
        so.intra_op_num_threads = options.threads
    so.inter_op_num_threads = 1
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3  # errors only: ORT's graph-optimisation warnings are noise at run time
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        source = model if isinstance(model, bytes) else str(model)
        return ort.InferenceSession(source, so, providers=providers_for(options))
    except UserError:
        raise
    except Exception as exc:  # onnxruntime's Fail/InvalidGraph/... are not one common type
        what = "the in-memory model" if isinstance(model, bytes) else str(model)
        raise UserError(f"cannot load {what}: {str(exc).splitlines()[0]}") from None
