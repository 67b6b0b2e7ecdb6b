"""Export the [erc] fusion checkpoint (visual student + residual fusion, ``fusion.safetensors``) to the ONNX
contract of :mod:`emostream.inference.fusion`, with every Linear in weight-only INT8.

    python -m emostream.train.quant_fusion --checkpoint train/runs/fusion/best --out models/emostream-fusion-int8

The visual student (the "visual projection" into the teacher's space) and the fusion head are tiny MLPs:
they use the ``dq`` kernel (FP32 activations, INT8 weights with per-output-channel scales), so the fused
correction is as exact as the weights allow; LayerNorm, the sigmoid gate and the cosine stay FP32.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from emostream.train.quantize import woq_int8

FUSION_INPUTS = ("text_embedding", "text_logits", "visual_embedding", "visual_confidence")


def load_fused(folder: Path) -> Any:
    """FusedModel (eval) with dimensions read from the saved weights."""
    from safetensors.torch import load_file

    from emostream.train.fusion import FusedModel
    from emostream.train.modules import ResidualFusion, VisualStudent

    state = load_file(str(folder / "fusion.safetensors"))
    hidden, in_dim = state["student.body.0.weight"].shape
    text_dim = state["student.body.3.weight"].shape[0]
    visual_dim = state["fusion.project.weight"].shape[1]
    model = FusedModel(
        VisualStudent(int(in_dim), int(text_dim), int(hidden), dropout=0.0),
        ResidualFusion(int(text_dim), int(visual_dim)),
    )
    model.load_state_dict(state)
    return model.eval()


def export_fusion(model: Any, out: Path, opset: int = 17) -> None:
    """Trace the runtime contract: (h_t, z_t, description embedding, confidence) -> fused logits."""
    import torch

    class Runtime(torch.nn.Module):
        def __init__(self, fused: Any) -> None:
            super().__init__()
            self.fused = fused

        def forward(
            self, h: torch.Tensor, z: torch.Tensor, emb: torch.Tensor, conf: torch.Tensor
        ) -> torch.Tensor:
            logits, _ = self.fused({"h": h, "logits": z, "emb": emb, "confidence": conf})
            return logits

    text_dim = model.fusion.project.out_features
    in_dim = model.student.body[0].in_features
    args = (torch.randn(2, text_dim), torch.randn(2, 7), torch.randn(2, in_dim), torch.rand(2))
    axes = {name: {0: "batch"} for name in (*FUSION_INPUTS, "logits")}
    with torch.no_grad():
        torch.onnx.export(
            Runtime(model),
            args,
            str(out),
            input_names=list(FUSION_INPUTS),
            output_names=["logits"],
            dynamic_axes=axes,
            opset_version=opset,
            dynamo=False,
        )


def build_fusion(checkpoint: Path, out: Path) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    model = load_fused(checkpoint)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fusion_fp32.onnx"
        export_fusion(model, fp32)
        report = woq_int8(fp32, out / "model.onnx", "dq", ())
    src_meta = checkpoint / "meta.json"
    meta = json.loads(src_meta.read_text()) if src_meta.is_file() else {}
    meta.update(inputs=list(FUSION_INPUTS), outputs=["logits"], quantization={"kernel": "dq", **report})
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return {"out": str(out), **report}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--checkpoint", type=Path, required=True, help="folder with fusion.safetensors (+ meta.json)"
    )
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    print(json.dumps(build_fusion(a.checkpoint, a.out)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
