"""`emostream train quantize`: DDVLM weight-only INT8 export of the text teacher for the torch-free runtime.

    emostream train quantize --model emostream-text-int8 --checkpoint train/runs/text-main/best

Steps: export the [erc] checkpoint (HF folder + head.safetensors + meta.json, :mod:`emostream.train.text_model`) to
FP32 ONNX, rewrite every Linear and embedding table to symmetric per-channel INT8
(:mod:`emostream.train.quant_graph`), write ``models/NAME/{model.onnx,tokenizer.json,meta.json}``, check INT8 vs FP32
on real prompts, and record sizes and sha256 in emostream/store/manifest.toml. ``--variants DIR`` also keeps the
comparison models the bench measures: ``onnx_fp32.onnx`` and ``dynamic_int8.onnx`` (ONNX Runtime
``quantize_dynamic``).

Which kernel runs the INT8 weights (measured here, MiniLM-L6 teacher, batch 1, 128 tokens, 1 thread,
interleaved rounds; p50): ORT FP32 25.8 ms, PyTorch FP32 29.5 ms; ``dq`` (DequantizeLinear per axis, which
ONNX Runtime fuses into MatMulNBits with INT8 block-wise activations) 30.8 ms, the same with FP32
activations 41.5 ms; ``integer`` (DynamicQuantizeMatMul) 9.7 ms, 16.4 ms with the six FFN output
projections left on ``dq``. Why: at batch 1 x 128 tokens every GEMM has M = 128 rows, so it is compute-
bound; weight-only kernels save memory traffic, not arithmetic, and the 8-bit MatMulNBits path is slower
than MLAS's FP32 SGEMM on this AVX-512 CPU. Only the integer GEMM (u8 x s8 -> s32, VNNI/AMX) cuts the
arithmetic. Its per-tensor activation scale is what costs accuracy, so the default keeps the post-GELU FFN
output projections on ``dq`` and smooths the other Linear inputs (:mod:`emostream.train.quant_smooth`). Weights are
the DDVLM scheme in every case: symmetric INT8, one scale per output channel, ``max|W_j| / 127``.
For GPU/TensorRT use ``--kernel dq`` (DynamicQuantizeMatMul is a CPU kernel; TensorRT runs the Q/DQ graph
with FP16 activations, see :mod:`emostream.inference.text`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from emostream.errors import UserError
from emostream.train.quant_calib import calibration_feeds, choose_alpha
from emostream.train.quant_graph import Kernel, weight_only_int8

REPO = Path(__file__).resolve().parents[1]  # train/ sits at the top of the checkout
FIXTURE = REPO / "tests/fixtures/meld/dev_sample.csv"
DEFAULT_KERNEL: Kernel = "integer"
DEFAULT_KEEP_FLOAT: tuple[str, ...] = (r"layer\.\d+/output/dense",)
"""Linears (node-name regexes) kept on the ``dq`` kernel under ``integer``: the FFN output projections,
whose post-GELU inputs lose most to a per-tensor UINT8 scale (MELD dev, epoch-1 teacher: top-1 agreement
with FP32 0.965 with all Linears integer, 0.973 keeping layer 0's, 0.980 keeping all six; 15 -> 22 ms)."""
DEFAULT_ALPHA = 0.7
"""Smoothing strength (SmoothQuant's alpha) for the ``integer`` kernel: on the epoch-2 teacher, top-1
agreement with FP32 on MELD dev was 0.976 unsmoothed, 0.977 / 0.987 / 0.992 / 0.993 at 0.3 / 0.5 / 0.7 / 0.8
(mean |logit error| lowest at 0.7)."""
INPUTS = ("input_ids", "attention_mask", "mask_pos")
OUTPUTS = ("embedding", "logits")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_checkpoint(path: Path) -> tuple[Any, Any, dict[str, Any]]:
    """(TextTeacher in eval mode with eager attention, HF tokenizer, meta) of an [erc] checkpoint."""
    from emostream.train.text_model import load_hf

    for name in ("config.json", "model.safetensors", "tokenizer.json", "head.safetensors", "meta.json"):
        if not (path / name).is_file():
            raise UserError(f"{path} is not a text-teacher checkpoint: {name} is missing")
    model, tok, meta = load_hf(path)
    setter = getattr(model.encoder, "set_attn_implementation", None)
    if setter is not None:
        setter("eager")  # plain MatMul/Softmax graph: exports cleanly, softmax stays FP32
    return model, tok, meta


def export_fp32(model: Any, out: Path, opset: int = 17) -> None:
    """Trace ``(input_ids, attention_mask, mask_pos) -> (embedding, logits)`` with dynamic batch/length."""
    import torch

    class Runtime(torch.nn.Module):
        def __init__(self, teacher: Any) -> None:
            super().__init__()
            self.teacher = teacher

        def forward(
            self, input_ids: torch.Tensor, attention_mask: torch.Tensor, mask_pos: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor]:
            hidden = self.teacher.encoder(
                input_ids=input_ids, attention_mask=attention_mask
            ).last_hidden_state
            index = mask_pos.view(-1, 1, 1).expand(-1, 1, hidden.shape[-1])
            h = hidden.gather(1, index).squeeze(1)
            return h, self.teacher.head(h)

    ids = torch.tensor([[101, 2000, 2001, 2002, 103, 102], [101, 2003, 2004, 103, 102, 0]])
    mask = (ids != 0).long()
    pos = torch.tensor([4, 3])
    axes = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}}
    axes.update({"mask_pos": {0: "batch"}, "embedding": {0: "batch"}, "logits": {0: "batch"}})
    with torch.no_grad():
        torch.onnx.export(
            Runtime(model.eval()),
            (ids, mask, pos),
            str(out),
            input_names=list(INPUTS),
            output_names=list(OUTPUTS),
            dynamic_axes=axes,
            opset_version=opset,
            dynamo=False,
        )


def woq_int8(
    src: Path,
    dst: Path,
    kernel: Kernel,
    keep_float: tuple[str, ...],
    calibration: list[dict[str, np.ndarray]] | None = None,
    alpha: float = DEFAULT_ALPHA,
    select: list[dict[str, np.ndarray]] | None = None,
) -> dict[str, Any]:
    """DDVLM weight-only INT8 of the FP32 ONNX graph ``src`` into ``dst``; returns the rewrite report.

    With the ``integer`` kernel and ``calibration`` feeds, Linear inputs are smoothed first
    (:mod:`emostream.train.quant_smooth`, ``alpha``; 0 = off; with ``select`` feeds the best of ``ALPHAS``)."""
    import onnx

    model = onnx.load(str(src))
    smoothing: dict[str, Any] = {}
    if kernel == "integer" and calibration and alpha > 0:
        from emostream.train.quant_smooth import smooth

        trials = None
        if select:
            alpha, trials = choose_alpha(model, calibration, select, keep_float)
        smoothing = smooth(model, calibration, alpha)
        if trials:
            smoothing["trials_on_train"] = trials
    report = weight_only_int8(
        model, kernel=kernel, keep_float_input=keep_float if kernel == "integer" else ()
    )
    onnx.save(model, str(dst))
    return {
        "linears": report.linears,
        "embeddings": report.embeddings,
        "float_mb": round(report.float_bytes / 1e6, 2),
        "int8_mb": round(report.int8_bytes / 1e6, 2),
        "skipped": report.skipped,
        "smoothing": smoothing,
    }


def dynamic_int8(src: Path, dst: Path) -> None:
    """ONNX Runtime's stock dynamic quantization (the paper's comparison variant), default options."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)


def agreement(
    ref: Path, test: Path, tokenizer_json: Path, meta: dict[str, Any], csv: Path
) -> dict[str, float]:
    """Top-1 agreement and mean embedding cosine of ``test`` vs ``ref`` on every prompt of a MELD CSV (the
    prompts ``meta`` describes: ``max_tokens``, ``context_turns``)."""
    from emostream.evaluation.meld import read_meld
    from emostream.inference.dialogue import meld_prompts
    from emostream.inference.text import TextModel

    a = TextModel.from_files(ref, tokenizer_json, meta)
    b = TextModel.from_files(test, tokenizer_json, meta)
    prompts = [p for d in read_meld(csv).dialogues.values() for p in meld_prompts(a.builder, d)]
    ea, la = (np.concatenate(x) for x in zip(*(a.run([p]) for p in prompts), strict=True))
    eb, lb = (np.concatenate(x) for x in zip(*(b.run([p]) for p in prompts), strict=True))
    cos = (ea * eb).sum(1) / (np.linalg.norm(ea, axis=1) * np.linalg.norm(eb, axis=1) + 1e-12)
    same = float((la.argmax(1) == lb.argmax(1)).mean())
    return {
        "top1_agreement": round(same, 4),
        "mean_cos": round(float(cos.mean()), 5),
        "max_logit_err": round(float(np.abs(la - lb).max()), 4),
        "utterances": len(prompts),
    }


def fixture_reference(fp32: Path, tokenizer_json: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """FP32 logits on the fixture CSV, stored in meta.json: tests check the shipped INT8 model against them
    without needing the FP32 weights (which are not shipped)."""
    from emostream.evaluation.meld import read_meld
    from emostream.inference.dialogue import meld_prompts
    from emostream.inference.text import TextModel

    model = TextModel.from_files(fp32, tokenizer_json, meta)
    prompts = [p for d in read_meld(FIXTURE).dialogues.values() for p in meld_prompts(model.builder, d)]
    logits = np.concatenate([model.run([p])[1] for p in prompts])
    return {
        "csv": str(FIXTURE.relative_to(REPO)),
        "csv_sha256": sha256(FIXTURE),
        "top1": logits.argmax(1).tolist(),
        "logits": np.round(logits, 4).tolist(),
    }


DIALOGUE_FILES = ("dialogue.json", "dialogue.npz")


def copy_dialogue(run: Path | None, out: Path, meta: dict[str, Any]) -> None:
    """Ship a dialogue model beside the encoder (or remove a stale one when ``run`` is None)."""
    for name in DIALOGUE_FILES:
        if run is None:
            (out / name).unlink(missing_ok=True)
            continue
        if not (run / name).is_file():
            raise UserError(f"{run / name} missing: --dialogue takes a `emostream train dialogue` run folder")
        if meta.get("context_turns") != 0:
            raise UserError("a dialogue model needs an utterance encoder (meta.json context_turns 0)")
        shutil.copyfile(run / name, out / name)


def update_manifest(manifest: Path, name: str, folder: Path) -> None:
    """Rewrite the ``[models."NAME".files]`` table and ``size`` of one local-source entry in place."""
    text = manifest.read_text()
    head = f'[models."{name}"]'
    table = f'[models."{name}".files]'
    if head not in text or table not in text:
        raise UserError(f"{manifest} has no entry {name}: ask the [models] owner to add it")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name != "README.md")  # the card is docs
    total = sum(p.stat().st_size for p in files)
    rows = "".join(f'"{p.name}" = {{ sha256 = "{sha256(p)}", size = {p.stat().st_size} }}\n' for p in files)
    start = text.index(table) + len(table) + 1
    end = start  # the table's rows are the lines that start with a quoted file name (none when new)
    while end < len(text) and text[end] == '"':
        end = text.index("\n", end) + 1
    text = text[:start] + rows + text[end:]
    entry = text.index(head)
    size_at = text.index("\nsize = ", entry) + 1
    line_end = text.index("\n", size_at)
    text = text[:size_at] + f"size = {total}" + text[line_end:]
    manifest.write_text(text)


def build(args: argparse.Namespace) -> dict[str, Any]:
    ckpt = Path(args.checkpoint)
    out = Path(args.out or REPO / "models" / args.model)
    out.mkdir(parents=True, exist_ok=True)
    model, _, meta = load_checkpoint(ckpt)
    keep = tuple(args.keep_float) if args.keep_float is not None else DEFAULT_KEEP_FLOAT
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(args.variants) / "onnx_fp32.onnx" if args.variants else Path(tmp) / "fp32.onnx"
        fp32.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        export_fp32(model, fp32)
        tok, budget, calib_csv = ckpt / "tokenizer.json", meta["max_tokens"], Path(args.calib_csv)
        past = meta.get("context_turns")
        calib = calibration_feeds(tok, budget, calib_csv, n=args.calib, past_turns=past)
        select = (
            calibration_feeds(tok, budget, calib_csv, n=args.select, skip=args.calib, past_turns=past)
            if args.select
            else None
        )
        report = woq_int8(fp32, out / "model.onnx", args.kernel, keep, calib, args.alpha, select)
        shutil.copy(ckpt / "tokenizer.json", out / "tokenizer.json")
        copy_dialogue(Path(args.dialogue) if args.dialogue else None, out, meta)
        if args.variants:
            dynamic_int8(fp32, Path(args.variants) / "dynamic_int8.onnx")
            shutil.copytree(ckpt, Path(args.variants) / "torch_fp32", dirs_exist_ok=True)
        quant = {
            "scheme": "symmetric per-output-channel INT8 weights (scale = max|W_j|/127), per-row INT8 "
            "embeddings; LayerNorm/softmax FP32",
            "kernel": args.kernel,
            "keep_float_input": list(keep) if args.kernel == "integer" else [],
            "calibration_csv": str(args.calib_csv),
            "inputs": list(INPUTS),
            "outputs": list(OUTPUTS),
            "fp32_onnx_mb": round(fp32.stat().st_size / 1e6, 2),
            "source_checkpoint": str(
                ckpt.resolve().relative_to(REPO) if ckpt.resolve().is_relative_to(REPO) else ckpt
            ),
            "source_sha256": sha256(ckpt / "model.safetensors"),
            **report,
            "fixture_fp32": fixture_reference(fp32, ckpt / "tokenizer.json", meta),
        }
        check = agreement(fp32, out / "model.onnx", out / "tokenizer.json", meta, Path(args.csv))
        quant["check"] = {"csv": Path(args.csv).name, **check}
        (out / "meta.json").write_text(json.dumps({**meta, "quantization": quant}, indent=2) + "\n")
    result = {
        "model": args.model,
        "out": str(out),
        "seconds": round(time.time() - t0, 1),
        "size_mb": round((out / "model.onnx").stat().st_size / 1e6, 2),
        "fp32_mb": quant["fp32_onnx_mb"],
        "check_csv": str(args.csv),
        **check,
        "files": {p.name: sha256(p) for p in sorted(out.iterdir())},
    }
    if args.manifest:
        update_manifest(Path(args.manifest), args.model, out)
    return result


def rekernel(args: argparse.Namespace) -> int:
    """``--checkpoint models/emostream-text-int8 --kernel dq``: the shipped INT8 model as a Q/DQ graph."""
    import onnx

    from emostream.train.quant_rekernel import to_qdq

    src = Path(args.checkpoint)
    out = Path(args.out or REPO / "models" / args.model)
    if out.resolve() == src.resolve():
        raise UserError(
            f"--kernel dq would overwrite its source {src}: pass --model emostream-text-qdq (or --out DIR)"
        )
    out.mkdir(parents=True, exist_ok=True)
    model = onnx.load(str(src / "model.onnx"))
    converted = to_qdq(model)
    onnx.save(model, str(out / "model.onnx"))
    shutil.copyfile(src / "tokenizer.json", out / "tokenizer.json")
    meta = json.loads((src / "meta.json").read_text())
    copy_dialogue(src if (src / DIALOGUE_FILES[0]).is_file() else None, out, meta)
    meta["quantization"] = {
        **meta.get("quantization", {}),
        "kernel": "dq",
        "rekernel_of": src.name,
        "rekerneled_matmuls": converted,
        "note": "same INT8 weights/scales/smoothing as the source; DequantizeLinear -> MatMul for CUDA/TensorRT",
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    if args.manifest and f'[models."{args.model}"]' in Path(args.manifest).read_text():
        update_manifest(Path(args.manifest), args.model, out)
    print(json.dumps({"model": args.model, "from": str(src), "converted": converted}))
    return 0


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="emostream train quantize", description=__doc__.split("\n")[0])
    p.add_argument("--model", default="emostream-text-int8", help="store name of the artifact (models/NAME)")
    p.add_argument(
        "--checkpoint",
        required=True,
        help="[erc] text-teacher folder (e.g. train/runs/text-main/best); with --kernel dq also a shipped"
        " INT8 model folder (models/emostream-text-int8): re-kernels it for GPUs (train/quant_rekernel.py)",
    )
    p.add_argument("--out", help="output folder (default: models/NAME in this repository)")
    p.add_argument(
        "--kernel",
        choices=("integer", "dq", "nbits"),
        default=DEFAULT_KERNEL,
        help="how ONNX Runtime runs the INT8 weights (see emostream/train/quant_graph.py)",
    )
    p.add_argument(
        "--keep-float", nargs="*", help="node-name parts kept at FP32 activations (integer kernel)"
    )
    p.add_argument(
        "--calib-csv", default=str(FIXTURE), help="MELD CSV whose prompts calibrate smoothing (train split)"
    )
    p.add_argument("--calib", type=int, default=256, help="calibration prompts for smoothing")
    p.add_argument(
        "--select", type=int, default=0, help="held-out prompts to pick alpha from ALPHAS (0: use --alpha)"
    )
    p.add_argument(
        "--alpha", type=float, default=DEFAULT_ALPHA, help="smoothing strength, 0 = off (integer kernel)"
    )
    p.add_argument("--variants", help="also write onnx_fp32.onnx, dynamic_int8.onnx, torch_fp32/ here")
    p.add_argument(
        "--dialogue",
        help="a `train dialogue` run folder: its dialogue.json + dialogue.npz ship beside model.onnx "
        "(the checkpoint must be an utterance encoder, meta context_turns 0)",
    )
    p.add_argument("--csv", default=str(FIXTURE), help="MELD CSV for the INT8 vs FP32 agreement check")
    p.add_argument(
        "--manifest", default=str(REPO / "emostream/store/manifest.toml"), help="'' to skip the update"
    )
    p.add_argument("--min-agreement", type=float, default=0.98, help="fail below this top-1 agreement")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(list(sys.argv[1:] if argv is None else argv))
    if (
        Path(args.checkpoint) / "fusion.safetensors"
    ).is_file():  # a fusion checkpoint: emostream.train.quant_fusion
        from emostream.train.quant_fusion import build_fusion

        name = args.model if args.model != "emostream-text-int8" else "emostream-fusion-int8"
        out = Path(args.out or REPO / "models" / name)
        fused = build_fusion(Path(args.checkpoint), out)
        if args.manifest and f'[models."{name}"]' in Path(args.manifest).read_text():
            update_manifest(Path(args.manifest), name, out)
        print(
            json.dumps({"model": name, **fused, "files": {p.name: sha256(p) for p in sorted(out.iterdir())}})
        )
        return 0
    if (Path(args.checkpoint) / "model.onnx").is_file() and args.kernel == "dq":
        return rekernel(args)
    result = build(args)
    print(json.dumps(result))
    if result["top1_agreement"] < args.min_agreement:
        print(f"INT8 top-1 agreement {result['top1_agreement']:.3f} < {args.min_agreement}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except UserError as exc:
        raise SystemExit(f"emostream.train.quantize: error: {exc}") from None
