"""Calibration for the ``integer`` kernel's smoothing: prompts from a MELD CSV (the train split in the
shipped build), and the choice of the smoothing strength by agreement with FP32 on held-out prompts of the
same CSV (never the dev set the model is judged on)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from emostream.train.quant_graph import weight_only_int8

ALPHAS = (0.5, 0.6, 0.7, 0.8, 0.9)
"""Alphas tried with ``--select N`` (agreement with FP32 on N held-out prompts of the calibration CSV)."""


def calibration_feeds(
    tokenizer_json: Path,
    max_tokens: int,
    csv: Path,
    n: int = 256,
    skip: int = 0,
    past_turns: int | None = None,
) -> list[dict[str, np.ndarray]]:
    """``n`` teacher inputs (past-only prompts) from a MELD CSV in a fixed shuffled order, after the first
    ``skip`` of that order (so calibration and selection sets never overlap)."""
    from tokenizers import Tokenizer

    from emostream.evaluation.meld import read_meld
    from emostream.inference.dialogue import meld_prompts
    from emostream.inference.prompt import PromptBuilder

    tok: Any = Tokenizer.from_file(str(tokenizer_json))
    builder = PromptBuilder(tok, max_tokens=max_tokens, past_turns=past_turns)
    prompts = [p for d in read_meld(csv).dialogues.values() for p in meld_prompts(builder, d)]
    order = np.random.default_rng(0).permutation(len(prompts))[skip : skip + n]
    feeds = []
    for i in order:
        ids = np.asarray([prompts[i].ids], dtype=np.int64)
        feeds.append(
            {
                "input_ids": ids,
                "attention_mask": np.ones_like(ids),
                "mask_pos": np.asarray([prompts[i].mask_pos]),
            }
        )
    return feeds


def _logits(model: Any, feeds: list[dict[str, np.ndarray]]) -> np.ndarray:
    from emostream.inference.onnx import RuntimeOptions, session

    sess = session(model.SerializeToString(), RuntimeOptions.cpu(1))
    return np.concatenate([sess.run(["logits"], f)[0] for f in feeds])


def choose_alpha(
    model: Any, calib: list[dict[str, np.ndarray]], select: list[dict[str, np.ndarray]], keep: tuple[str, ...]
) -> tuple[float, dict[str, Any]]:
    """The smoothing alpha whose INT8 model agrees best with FP32 on ``select`` (held-out train prompts)."""
    import onnx

    from emostream.train.quant_smooth import activation_ranges, linear_inputs, smooth

    ref = _logits(model, select)
    ranges = activation_ranges(model, calib, list(linear_inputs(model)))
    trials: dict[str, Any] = {}
    for alpha in ALPHAS:
        trial = onnx.ModelProto()
        trial.CopyFrom(model)
        smooth(trial, calib, alpha, ranges)
        weight_only_int8(trial, kernel="integer", keep_float_input=keep)
        got = _logits(trial, select)
        trials[str(alpha)] = {
            "top1_agreement": round(float((got.argmax(1) == ref.argmax(1)).mean()), 4),
            "mean_abs_err": round(float(np.abs(got - ref).mean()), 4),
        }
    best = max(ALPHAS, key=lambda a: (trials[str(a)]["top1_agreement"], -trials[str(a)]["mean_abs_err"]))
    return best, trials
