"""`emostream bench quant`: PyTorch FP32 vs ONNX FP32 vs ONNX Runtime dynamic INT8 vs our WOQ INT8.

All four variants are built from one [erc] text-teacher checkpoint in this run (``emostream.train.quantize``; needs
the ``train`` extra for the export and the PyTorch baseline) and measured in this run on this CPU:

* ``size_mb``: the model file(s) a deployment carries (PyTorch: model.safetensors + head.safetensors);
* ``p50_ms`` / ``p95_ms``: one utterance at batch 1 with a full 128-token context, measured in
  interleaved rounds so a noisy neighbour hits every variant alike;
* ``utterances_per_s`` and ``dev_weighted_f1``: a pass over the MELD CSV given with ``--csv`` at batch 1
  with past-only context (the live path of ``emostream eval meld``); ``top1_agreement`` is against
  ``onnx_fp32`` on the same utterances.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from emostream.errors import UserError
from emostream.progress import Steps

HELP = "Quantization: size, latency, throughput and dev weighted-F1 of FP32, dynamic INT8 and WOQ INT8."
VARIANTS = ("torch_fp32", "onnx_fp32", "dynamic_int8", "woq_int8")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--csv", required=True, help="MELD dev CSV (e.g. dev_sent_emo.csv); required")
    parser.add_argument("--checkpoint", required=True, help="[erc] text-teacher folder (HF + head + meta)")
    parser.add_argument("--work", help="folder for the built variants (default: a temporary one)")
    parser.add_argument("--woq", help="measure this WOQ model folder instead of building one")
    parser.add_argument(
        "--kernel", default="", help="WOQ kernel when building (default: emostream.train.quantize's)"
    )
    parser.add_argument(
        "--calib-csv",
        default=str(Path(__file__).resolve().parents[2] / "tests/fixtures/meld/dev_sample.csv"),
        help="MELD CSV (train split) for the WOQ smoothing calibration when building",
    )
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads for every variant")
    parser.add_argument("--runs", type=int, default=60, help="latency samples per variant")
    parser.add_argument("--limit", type=int, default=0, help="only the first N dialogues of the CSV")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset")
    parser.add_argument("--json", action="store_true", help="one JSON line per variant")


def _build(args: argparse.Namespace, work: Path) -> dict[str, Path]:
    try:
        from emostream.train import quantize
    except ModuleNotFoundError as exc:
        raise UserError(f"bench quant needs the `train` extra ({exc.name} is not installed)") from None
    ckpt = Path(args.checkpoint)
    model, _, _ = quantize.load_checkpoint(ckpt)
    fp32 = work / "onnx_fp32.onnx"
    if not fp32.is_file():
        quantize.export_fp32(model, fp32)
    dyn = work / "dynamic_int8.onnx"
    if not dyn.is_file():
        quantize.dynamic_int8(fp32, dyn)
    woq = Path(args.woq) / "model.onnx" if args.woq else work / "woq_int8.onnx"
    if not args.woq:
        kernel = args.kernel or quantize.DEFAULT_KERNEL
        meta = json.loads((ckpt / "meta.json").read_text())
        calib = quantize.calibration_feeds(
            ckpt / "tokenizer.json",
            meta["max_tokens"],
            Path(args.calib_csv),
            past_turns=meta.get("context_turns"),
        )
        quantize.woq_int8(fp32, woq, kernel, quantize.DEFAULT_KEEP_FLOAT, calib)
    return {"onnx_fp32": fp32, "dynamic_int8": dyn, "woq_int8": woq}


def _torch_runner(ckpt: Path, threads: int) -> tuple[Callable[[Any], np.ndarray], float]:
    import torch

    from emostream.train.text_model import load_hf

    torch.set_num_threads(threads)
    model, _, _ = load_hf(ckpt)

    def logits(prompt: Any) -> np.ndarray:
        ids = torch.tensor([prompt.ids])
        with torch.inference_mode():
            _, out = model(ids, torch.ones_like(ids), torch.tensor([prompt.mask_pos]))
        return out[0].numpy()

    size = sum((ckpt / n).stat().st_size for n in ("model.safetensors", "head.safetensors"))
    return logits, size / 1e6


def _long_prompt(builder: Any, csv: str) -> Any:
    """A real dev prompt that fills the 128-token budget (the latency case)."""
    from emostream.evaluation.meld import read_meld
    from emostream.inference.dialogue import meld_prompts

    best = None
    for dialogue in read_meld(csv).dialogues.values():
        for p in meld_prompts(builder, dialogue):
            if best is None or len(p.ids) > len(best.ids):
                best = p
            if len(p.ids) >= builder.max_tokens:
                return p
    return best


def dev_pass(
    runners: dict[str, tuple[Callable[[Any], np.ndarray], float]],
    builder: Any,
    csv: str,
    limit: int,
    bar: Steps | None = None,
) -> dict[str, dict[str, Any]]:
    """Every utterance through every variant in turn (batch 1, past-only context), timed per variant:
    throughput and scores come from the same pass, so load changes hit all variants alike."""
    from emostream.evaluation.meld import read_meld
    from emostream.evaluation.scores import scores
    from emostream.inference.dialogue import meld_prompts

    gold: list[int] = []
    preds: dict[str, list[int]] = {n: [] for n in runners}
    spent = dict.fromkeys(runners, 0.0)
    dialogues = list(read_meld(csv).dialogues.values())[: limit or None]
    if bar is not None:
        bar.update(total=sum(len(d) for d in dialogues))
    for dialogue in dialogues:
        for utt, prompt in zip(dialogue, meld_prompts(builder, dialogue), strict=True):
            if bar is not None:
                bar.advance()
            gold.append(utt.label)
            for name, (fn, _) in runners.items():
                t0 = time.perf_counter()
                preds[name].append(int(np.argmax(fn(prompt))))
                spent[name] += time.perf_counter() - t0
    return {
        n: {
            **scores(gold, preds[n]),
            "predictions": preds[n],
            "utterances": len(gold),
            "utterances_per_s": round(len(gold) / spent[n], 2),
        }
        for n in runners
    }


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    from emostream.inference.onnx import RuntimeOptions
    from emostream.inference.text import TextModel

    wanted = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(wanted) - set(VARIANTS))
    if unknown:
        raise UserError(f"unknown variants {unknown}: choose from {', '.join(VARIANTS)}")
    ckpt = Path(args.checkpoint)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        with Steps("bench quant: building the variants (export, INT8)"):
            paths = _build(args, work)
        options = RuntimeOptions.cpu(args.threads)
        meta = json.loads((ckpt / "meta.json").read_text())
        tok = ckpt / "tokenizer.json"
        runners: dict[str, tuple[Callable[[Any], np.ndarray], float]] = {}
        builder = None
        for name in ("onnx_fp32", "dynamic_int8", "woq_int8"):
            if name in wanted or name == "onnx_fp32":
                m = TextModel.from_files(paths[name], tok, meta, options=options, name=name)
                builder = m.builder
                runners[name] = (
                    (lambda mm: lambda p: mm.run([p])[1][0])(m),
                    paths[name].stat().st_size / 1e6,
                )
        if "torch_fp32" in wanted:
            runners["torch_fp32"] = _torch_runner(ckpt, args.threads)
        prompt = _long_prompt(builder, args.csv)
        lat: dict[str, list[float]] = {n: [] for n in runners}
        for fn, _ in runners.values():
            for _ in range(3):
                fn(prompt)
        rounds = 6
        per_round = max(1, args.runs // rounds)
        with Steps("bench quant: latency runs", rounds * per_round * len(runners)) as bar:
            for rnd in range(rounds):
                order = list(runners) if rnd % 2 == 0 else list(reversed(runners))
                for name in order:
                    fn = runners[name][0]
                    bar.update(note=name)
                    for _ in range(per_round):
                        t0 = time.perf_counter()
                        fn(prompt)
                        lat[name].append(time.perf_counter() - t0)
                        bar.advance()
        with Steps(f"bench quant: dev pass x{len(runners)} variants") as bar:
            results = dev_pass(runners, builder, args.csv, args.limit, bar)
        for name, (_, size) in runners.items():
            results[name].update(size_mb=round(size, 2), lat=lat[name])
        ref = np.asarray(results["onnx_fp32"]["predictions"])
        base = results.get("torch_fp32", results["onnx_fp32"])
        lines = []
        for name in [v for v in VARIANTS if v in wanted]:
            r = results[name]
            lines.append(
                {
                    "variant": name,
                    "size_mb": r["size_mb"],
                    "p50_ms": round(float(np.percentile(r["lat"], 50)) * 1000, 2),
                    "p95_ms": round(float(np.percentile(r["lat"], 95)) * 1000, 2),
                    "utterances_per_s": r["utterances_per_s"],
                    "dev_weighted_f1": r["weighted_f1"],
                    "dev_accuracy": r["accuracy"],
                    "top1_agreement": round(float((np.asarray(r["predictions"]) == ref).mean()), 4),
                    "speedup_vs_torch_p50": round(float(np.median(base["lat"]) / np.median(r["lat"])), 2),
                    "smaller_than_fp32": round(results["onnx_fp32"]["size_mb"] / r["size_mb"], 2),
                    "utterances": r["utterances"],
                    "context_tokens": len(prompt.ids),
                    "threads": args.threads,
                }
            )
    return lines


def run(args: argparse.Namespace) -> int:
    for line in measure(args):
        if args.json:
            print(json.dumps(line), flush=True)
        else:
            print(
                f"{line['variant']:13s} {line['size_mb']:7.1f} MB  p50 {line['p50_ms']:7.1f} ms  "
                f"p95 {line['p95_ms']:7.1f} ms  {line['utterances_per_s']:6.1f} utt/s  "
                f"dev wF1 {line['dev_weighted_f1']:.2f}  agree {line['top1_agreement']:.3f}"
            )
    return 0
