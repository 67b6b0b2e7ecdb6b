"""`emostream eval meld`: evaluate the runtime emotion model on a MELD-format CSV.

Runs exactly what the context worker runs (:class:`emostream.inference.dialogue.DialogueHistory` for past-only
context, :meth:`emostream.inference.text.TextModel.decide` at batch 1) over every dialogue of the CSV with its gold
text, and prints weighted-F1 and accuracy (percent), per-class F1, utterances and throughput.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from emostream.errors import UserError
from emostream.evaluation.meld import TEXT_VARIANTS
from emostream.evaluation.scores import scores
from emostream.evaluation.transcripts import Heard, Hypotheses

HELP = "Evaluate the runtime emotion model on a MELD-format CSV (weighted-F1, accuracy, per class)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="dataset", metavar="DATASET", required=True)
    p = sub.add_parser("meld", help="a MELD-format CSV (e.g. dev_sent_emo.csv)")
    p.add_argument("--csv", required=True, help="MELD CSV (train/dev/test_sent_emo.csv layout)")
    p.add_argument("--model", help="store name or folder of the runtime text model (default: context.model)")
    p.add_argument("--json", action="store_true", help="print one JSON line")
    p.add_argument("--limit", type=int, default=0, help="only the first N dialogues (0 = all)")
    p.add_argument(
        "--text-variant",
        default="gold",
        choices=TEXT_VARIANTS,
        help="score on perturbed gold text: flat (!/? -> .), lower (case folded), flat-lower, "
        "bare (no punctuation); default gold",
    )
    p.add_argument(
        "--transcripts",
        metavar="JSONL",
        help="score on ASR text instead: each utterance read as these transcripts have it "
        "(`emostream train asr-text` on the same CSV); utterances without one keep gold text and are counted",
    )
    p.add_argument(
        "--best-only",
        action="store_true",
        help="with --transcripts: read only each line's best hypothesis, not the weighted mean over the "
        "cache's hypotheses (asr.hypotheses = 1)",
    )


def evaluate(
    model: Any,
    csv: str,
    history: int,
    limit: int = 0,
    variant: str = "gold",
    transcripts: Mapping[tuple[int, int], Heard] | None = None,
) -> dict[str, Any]:
    """Score a :class:`emostream.inference.text.TextModel` over a MELD CSV exactly as the context worker
    runs it (:class:`DialogueHistory` windows, :meth:`TextModel.decide`); also returns the predictions."""
    from emostream.evaluation.meld import read_meld
    from emostream.inference.dialogue import DialogueHistory

    split = read_meld(csv, variant)
    dialogues = list(split.dialogues.values())[: limit or None]
    gold: list[int] = []
    pred: list[int] = []
    fallback = several = 0
    from rich.console import Console
    from rich.progress import track

    t0 = time.perf_counter()
    # a bar on a terminal's stderr only: rich draws nothing when stderr is a pipe or a file
    err = Console(stderr=True)
    bar = track(
        dialogues, description="scoring dialogues", console=err, transient=True, disable=not err.is_terminal
    )
    for dialogue in bar:
        turns = DialogueHistory(model.builder, history)
        for utt in dialogue:
            text: str = utt.text
            hypotheses: Hypotheses = ()
            if transcripts is not None:
                heard = transcripts.get((utt.dialogue, utt.index))
                fallback += heard is None
                text, hypotheses = (utt.text, ()) if heard is None else heard
            window = turns.add(str(utt.index), utt.speaker, float(utt.index), text, hypotheses)
            several += bool(window.readings and window.readings[-1])
            _, logits, encodings = model.decide(window)
            turns.remember(encodings)
            gold.append(utt.label)
            pred.append(int(np.argmax(logits)))
    elapsed = time.perf_counter() - t0
    if not gold:
        raise UserError(f"{csv}: no usable utterances (skipped: {dict(split.skipped)})")
    return {
        **scores(gold, pred),
        "utterances": len(gold),
        "utterances_per_s": round(len(gold) / elapsed, 2),
        "skipped": dict(split.skipped),
        **({"gold_text_no_transcript": fallback} if transcripts is not None else {}),
        **({"several_readings": several} if transcripts is not None else {}),
        "predictions": pred,
    }


def run(args: argparse.Namespace) -> int:
    from emostream.config import load_settings
    from emostream.inference.onnx import RuntimeOptions
    from emostream.inference.text import TextModel

    settings = load_settings(args.config)
    name = args.model or settings.context.model
    model = TextModel.load(name, RuntimeOptions.of(settings.context), settings, settings.context.max_tokens)
    heard = None
    if args.transcripts:
        if args.text_variant != "gold":
            raise UserError("--transcripts replaces the text: leave --text-variant at gold")
        from emostream.evaluation.transcripts import load_heard

        heard = load_heard(args.transcripts)
        if args.best_only:
            heard = {key: (text, ()) for key, (text, _) in heard.items()}
    result = evaluate(model, args.csv, settings.context.history, args.limit, args.text_variant, heard)
    result.pop("predictions")
    variant = f"asr:{args.transcripts}" if heard is not None else args.text_variant
    if heard is not None and args.best_only:
        variant += " (best hypothesis only)"
    result = {"model": name, "csv": args.csv, "text_variant": variant, **result}
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"{name} on {args.csv} ({variant} text): {result['utterances']} utterances, {result['utterances_per_s']}/s"
    )
    print(f"weighted-F1 {result['weighted_f1']:.2f}  accuracy {result['accuracy']:.2f}")
    for emotion, f1 in result["per_class_f1"].items():
        print(f"  {emotion:9s} F1 {f1:6.2f}")
    return 0
