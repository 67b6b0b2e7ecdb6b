"""`emostream train calibrate|average`: post-hoc improvements of a trained text teacher, chosen on dev.

    emostream train calibrate --checkpoint RUN/best --dev-csv dev_sent_emo.csv --out RUN/best-bias
    emostream train average --checkpoint RUN/best --state RUN/last.pt:model --state OTHER.pt:ema --out DIR

``calibrate`` fits one bias per class on the head's logits (neutral fixed at 0: a common shift changes
nothing) by coordinate search, maximising the mean dev weighted-F1 over the text variants (default gold
and flat, the trainer's ``select_on = "mean"``). The bias is folded into ``head.bias`` of a copy of the
checkpoint, so ``train quantize``, the ONNX runtime, eval, replay and the GPU variant all apply it with no
runtime branch; ``meta.json`` records it under ``logit_bias``. Because the bias is fitted on the same dev
split it is scored on, the report also gives a cross-validated figure: fit on a random half of the dev
dialogues, score the other half, over several splits (the honest estimate of what it buys).

``average`` writes the uniform mean of several state dicts (``best/`` folders or ``last.pt:model`` /
``last.pt:ema``) into a checkpoint folder, for checkpoint averaging.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from emostream.errors import UserError
from emostream.schema import EMOTIONS

GRID = np.round(np.arange(-2.0, 2.0001, 0.05), 2)
"""Candidate bias values per class (logit units)."""


def weighted_f1(labels: np.ndarray, pred: np.ndarray, k: int = len(EMOTIONS)) -> float:
    """Weighted F1 in percent (sklearn's definition, zero_division=0), vectorised for the search."""
    cm = np.bincount(labels * k + pred, minlength=k * k).reshape(k, k).astype(np.float64)
    tp = np.diag(cm)
    support = cm.sum(1)
    denom = support + cm.sum(0)
    f1 = np.divide(2 * tp, denom, out=np.zeros(k), where=denom > 0)
    return float(100 * (f1 * support).sum() / max(1.0, support.sum()))


def objective(sets: Sequence[tuple[np.ndarray, np.ndarray]], bias: np.ndarray) -> float:
    """Mean weighted F1 over (logits, labels) sets with ``bias`` added to the logits."""
    return float(np.mean([weighted_f1(y, (z + bias).argmax(1)) for z, y in sets]))


def fit_bias(
    sets: Sequence[tuple[np.ndarray, np.ndarray]], rounds: int = 3, grid: np.ndarray = GRID
) -> np.ndarray:
    """Coordinate search over one bias per class (class 0 fixed at 0); ties keep the smaller |bias|."""
    k = sets[0][0].shape[1]
    bias = np.zeros(k)
    best = objective(sets, bias)
    order = sorted(grid.tolist(), key=abs)
    for _ in range(rounds):
        moved = False
        for c in range(1, k):
            for v in order:
                trial = bias.copy()
                trial[c] = v
                score = objective(sets, trial)
                if score > best + 1e-9:
                    best, bias, moved = score, trial, True
        if not moved:
            break
    return bias


def cross_validate(
    variants: dict[str, tuple[np.ndarray, np.ndarray]],
    dialogues: np.ndarray,
    splits: int = 20,
    seed: int = 0,
) -> dict[str, Any]:
    """Fit on a random half of the dialogues, score the other half; mean/std of the held-out deltas."""
    rng = np.random.default_rng(seed)
    ids = np.unique(dialogues)
    deltas: dict[str, list[float]] = {name: [] for name in variants}
    deltas["mean"] = []
    for _ in range(splits):
        chosen = rng.permutation(ids)[: len(ids) // 2]
        for fit_rows in (np.isin(dialogues, chosen), ~np.isin(dialogues, chosen)):
            held = ~fit_rows
            bias = fit_bias([(z[fit_rows], y[fit_rows]) for z, y in variants.values()])
            per = []
            for name, (z, y) in variants.items():
                before = weighted_f1(y[held], z[held].argmax(1))
                after = weighted_f1(y[held], (z[held] + bias).argmax(1))
                deltas[name].append(after - before)
                per.append(after - before)
            deltas["mean"].append(float(np.mean(per)))
    return {
        "folds": 2 * splits,
        "held_out_delta": {n: round(float(np.mean(d)), 2) for n, d in deltas.items()},
        "held_out_delta_std": {n: round(float(np.std(d)), 2) for n, d in deltas.items()},
    }


def dev_logits(
    checkpoint: Path, csv: Path, variants: Sequence[str], threads: int = 1, batch_size: int = 64
) -> dict[str, Any]:
    """FP32 dev logits of a checkpoint per text variant (past-only, its max_tokens), plus labels/dialogues."""
    import torch

    from emostream.evaluation.meld import Utterance, read_meld, text_variant
    from emostream.inference.prompt import PromptBuilder
    from emostream.train.text import predict
    from emostream.train.text_data import encode_split
    from emostream.train.text_model import load_hf

    torch.set_num_threads(threads)
    model, tok, meta = load_hf(checkpoint)
    builder = PromptBuilder(tok.backend_tokenizer, int(meta["max_tokens"]))
    split = read_meld(csv)
    out: dict[str, Any] = {}
    for v in variants:

        def rewrite(u: Utterance, v: str = v) -> str:
            return text_variant(u.text, v)

        examples = encode_split(split, builder, None, 0, rewrite)
        out[v], _ = predict(model, examples, batch_size)
        out["labels"] = np.array([e.label for e in examples])
        out["dialogues"] = np.array([e.key[0] for e in examples])
    return out


def cached_logits(
    checkpoint: Path, csv: Path, variants: Sequence[str], cache: Path | None, threads: int
) -> Any:
    """:func:`dev_logits`, read from / written to ``cache`` (.npz) when given."""
    if cache is not None and cache.is_file():
        with np.load(cache) as data:
            got = {k: data[k] for k in data.files}
        if all(v in got for v in variants):
            return got
    got = dev_logits(checkpoint, csv, variants, threads)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, **got)
    return got


def summary(variants: dict[str, tuple[np.ndarray, np.ndarray]], bias: np.ndarray) -> dict[str, Any]:
    """Dev weighted-F1 / accuracy / per-class F1 per variant with ``bias`` applied."""
    from emostream.evaluation.scores import scores

    return {n: scores(y.tolist(), (z + bias).argmax(1).tolist()) for n, (z, y) in variants.items()}


def apply_bias(checkpoint: Path, out: Path, bias: np.ndarray, record: dict[str, Any]) -> Path:
    """Copy ``checkpoint`` to ``out`` with ``bias`` added to head.bias; meta.json gains ``logit_bias``."""
    from safetensors.numpy import load_file, save_file

    if out.resolve() == checkpoint.resolve():
        raise UserError(f"--out must differ from --checkpoint ({out})")
    shutil.copytree(checkpoint, out, dirs_exist_ok=True)
    head = load_file(str(checkpoint / "head.safetensors"))
    head["bias"] = (head["bias"].astype(np.float64) + bias).astype(head["bias"].dtype)
    save_file(head, str(out / "head.safetensors"))
    meta = json.loads((checkpoint / "meta.json").read_text())
    meta["logit_bias"] = {**record, "bias": dict(zip(EMOTIONS, np.round(bias, 3).tolist(), strict=True))}
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out


def _state(spec: str) -> dict[str, Any]:
    """A state dict from a ``best/`` folder or from ``last.pt:model`` / ``last.pt:ema``."""
    import torch

    path, _, key = spec.partition(":")
    p = Path(path)
    if p.is_dir():
        from emostream.train.text_model import load_hf

        return dict(load_hf(p)[0].state_dict())
    if not p.is_file():
        raise UserError(f"--state {spec}: no such checkpoint folder or .pt file")
    state = torch.load(p, map_location="cpu", weights_only=False)
    if (key or "model") not in state or state[key or "model"] is None:
        raise UserError(f"--state {spec}: {p} has no {key or 'model'!r} state (keys: {sorted(state)})")
    return dict(state[key or "model"])


def average(template: Path, states: Sequence[str], out: Path) -> Path:
    """Uniform average of ``states`` saved as a checkpoint folder laid out like ``template``."""
    from emostream.train.text_model import load_hf, save_hf

    if len(states) < 2:
        raise UserError("average needs at least two --state checkpoints")
    model, tok, meta = load_hf(template)
    dicts = [_state(s) for s in states]
    mean = {k: sum(d[k].double() for d in dicts) / len(dicts) for k in dicts[0]}
    model.load_state_dict({k: v.to(dicts[0][k].dtype) for k, v in mean.items()})
    meta = {**meta, "averaged_from": list(states)}
    meta.pop("dev", None)
    return save_hf(model, tok, out, meta)


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="emostream train", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("calibrate", help="fit a per-class logit bias on dev and fold it into the head")
    c.add_argument("--checkpoint", required=True, help="text-teacher folder (RUN/best)")
    c.add_argument("--dev-csv", required=True, help="MELD dev_sent_emo.csv")
    c.add_argument("--out", help="write the calibrated checkpoint here (omit: report only)")
    c.add_argument("--variants", default="gold,flat", help="text variants whose mean wF1 is maximised")
    c.add_argument("--cache", help="dev logits .npz (reused when present)")
    c.add_argument("--splits", type=int, default=20, help="random dev halvings for the cross-validation")
    c.add_argument("--threads", type=int, default=1)
    a = sub.add_parser("average", help="average checkpoints' weights into one checkpoint folder")
    a.add_argument("--checkpoint", required=True, help="folder giving the layout, tokenizer and meta")
    a.add_argument("--state", action="append", default=[], help="best/ folder or last.pt[:model|:ema]")
    a.add_argument("--out", required=True)
    a.add_argument("--threads", type=int, default=1)
    return p.parse_args(argv)


def calibrate(args: argparse.Namespace) -> dict[str, Any]:
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    ckpt = Path(args.checkpoint)
    got = cached_logits(
        ckpt, Path(args.dev_csv), names, Path(args.cache) if args.cache else None, args.threads
    )
    variants = {n: (got[n], got["labels"]) for n in names}
    bias = fit_bias(list(variants.values()))
    zero = np.zeros_like(bias)
    before, after = summary(variants, zero), summary(variants, bias)
    record = {
        "fitted_on": f"{Path(args.dev_csv).name} ({len(got['labels'])} utterances), mean wF1 over {names}",
        "search": f"coordinate search, grid {GRID[0]}..{GRID[-1]} step 0.05, neutral fixed at 0",
        "dev_before": {n: before[n]["weighted_f1"] for n in names},
        "dev_after": {n: after[n]["weighted_f1"] for n in names},
        "cross_validated": cross_validate(variants, got["dialogues"], args.splits),
    }
    if args.out:
        apply_bias(ckpt, Path(args.out), bias, record)
    return {
        **record,
        "bias": dict(zip(EMOTIONS, np.round(bias, 3).tolist(), strict=True)),
        "after": after,
        "out": args.out,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse(list(sys.argv[1:] if argv is None else argv))
    if args.command == "calibrate":
        print(json.dumps(calibrate(args)))
        return 0
    import torch

    torch.set_num_threads(args.threads)
    print(average(Path(args.checkpoint), args.state, Path(args.out)))
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except UserError as exc:
        raise SystemExit(f"emostream.train.calibrate: error: {exc}") from None
