"""`emostream train text|visual|fusion|dialogue|quantize|calibrate|average|asr-text`: train emostream's models (`train` extra).

torch is imported only inside the chosen subcommand, so `emostream --help` stays light.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Any

from emostream.config import ConfigError, Settings, load_settings
from emostream.errors import UserError

HELP = "Train and quantize emostream's models (needs the `train` extra)."

_KINDS = {
    "text": ("emostream.train.text", "TextConfig", "train_text"),
    "visual": ("emostream.train.visual", "VisualConfig", "train_visual"),
    "fusion": ("emostream.train.fusion", "FusionConfig", "train_fusion"),
    "dialogue": ("emostream.train.dialogue", "DialogueConfig", "train_dialogue"),
}

_POSTHOC = {
    "calibrate": "fit a per-class logit bias on dev and fold it into a text checkpoint (train/calibrate.py)",
    "average": "average several text checkpoints' weights into one (train/calibrate.py)",
    "asr-text": "speak MELD lines with espeak-ng and cache Whisper's transcripts (train/asr_text.py)",
    "teacher-targets": "cache a larger teacher's logits for every form of every train line, the student's "
    "KD targets (train/teacher_targets.py)",
}
_POSTHOC_MODULE = {
    "asr-text": "emostream.train.asr_text",
    "teacher-targets": "emostream.train.teacher_targets",
}
"""Modules whose ``main`` reads the options alone; the others (calibrate.py) take the command name first."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="kind", metavar="KIND", required=True)
    for kind in _KINDS:
        p = sub.add_parser(
            kind, help=f"train the {kind} model from a config file (emostream/train/configs/*.toml)"
        )
        p.add_argument(
            "--config", dest="train_config", metavar="FILE", help="TOML file (emostream/train/configs/)"
        )
        p.add_argument("--run-dir", help="output folder (overrides the config's run_dir)")
        p.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override one config key (TOML value syntax), repeatable",
        )
        p.add_argument("--fresh", action="store_true", help="start over instead of resuming run_dir/last.pt")
        p.add_argument(
            "--no-progress",
            action="store_true",
            help="no progress bar (logs only; also off when stderr is no terminal)",
        )
        if kind == "text":
            p.add_argument(
                "--encoder", metavar="PATH", help="encoder folder (default: model store all-MiniLM-L6-v2)"
            )
            p.add_argument("--train-csv", metavar="FILE", help="MELD train_sent_emo.csv")
            p.add_argument("--dev-csv", metavar="FILE", help="MELD dev_sent_emo.csv")
    f = sub.add_parser(
        "features", help="cache teacher outputs or description embeddings (.npz) for visual/fusion"
    )
    f.add_argument("what", choices=("teacher", "descriptions"))
    f.add_argument(
        "--model", metavar="DIR", help="teacher: a train/runs/<run>/best folder; descriptions: encoder"
    )
    f.add_argument("--input", metavar="FILE", required=True, help="teacher: MELD CSV; descriptions: JSONL")
    f.add_argument("--out", metavar="NPZ", required=True)
    f.add_argument("--variant", default="gold", help="teacher: text variant (gold, flat, lower, bare, ...)")
    f.add_argument(
        "--context-turns", type=int, help="teacher: past turns per input (default: the model's meta.json)"
    )
    f.add_argument("--folds", type=int, default=0, help="teacher: score only held-out fold --fold of K")
    f.add_argument("--fold", type=int, default=0)
    f.add_argument(
        "--transcripts", metavar="JSONL[,JSONL]", help="teacher: read utterances as these ASR transcripts"
    )
    q = sub.add_parser(  # "+" prefix: every "--option" (and --help) is passed through to emostream.train.quantize
        "quantize",
        help="weight-only INT8 export of a trained model (emostream/train/quantize.py)",
        prefix_chars="+",
        add_help=False,
    )
    q.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    for name, what in _POSTHOC.items():  # options passed through to emostream.train.calibrate, like quantize
        c = sub.add_parser(name, help=what, prefix_chars="+", add_help=False)
        c.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def bars(args: argparse.Namespace) -> bool:
    """tqdm bars for a person at a terminal only: piped or logged runs keep the per-epoch log lines."""
    from emostream.progress import enabled

    return not args.no_progress and enabled()


def _parse_sets(items: list[str]) -> dict[str, Any]:
    import tomllib

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = value
    return out


def _import(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name in ("torch", "transformers"):
            raise UserError(f"training needs the `train` extra ({exc.name} is not installed)") from None
        if exc.name == module:
            return None
        raise


def _features(args: argparse.Namespace) -> int:
    feats = _import("emostream.train.features")
    from emostream.train.config import resolve_model_path

    if args.what == "teacher":
        if not args.model:
            raise UserError("features teacher needs --model DIR (a trained text teacher's best/ folder)")
        out = feats.teacher_features(
            resolve_model_path(args.model, "", _settings(args)),
            args.input,
            args.out,
            variant=args.variant,
            context_turns=args.context_turns,
            folds=args.folds,
            fold=args.fold,
            transcripts=_transcripts(args.transcripts),
        )
    else:
        out = feats.description_features(
            args.input, resolve_model_path(args.model or "", "all-MiniLM-L6-v2", _settings(args)), args.out
        )
    print(out)
    return 0


def _transcripts(paths: str | None) -> dict[tuple[int, int], str] | None:
    from emostream.evaluation.transcripts import load_transcripts

    return load_transcripts(*paths.split(",")) if paths else None


def _settings(args: argparse.Namespace) -> Settings:
    """The effective settings (``--config``): where the store is for models training starts from."""
    try:
        return load_settings(args.config)
    except ConfigError as exc:
        raise UserError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    if args.kind == "quantize":
        mod = _import("emostream.train.quantize")
        if mod is None or not hasattr(mod, "main"):
            raise UserError(
                "`emostream train quantize` needs the train extra: pip install 'emostream[train]'"
            )
        return int(mod.main(list(args.rest)) or 0)
    if args.kind in _POSTHOC:
        own = _POSTHOC_MODULE.get(args.kind)
        mod = _import(own or "emostream.train.calibrate")
        if mod is None:
            raise UserError(
                f"`emostream train {args.kind}` needs the train extra: pip install 'emostream[train]'"
            )
        return int(mod.main(list(args.rest) if own else [args.kind, *args.rest]) or 0)
    if args.kind == "features":
        return _features(args)
    module, cfg_name, fn_name = _KINDS[args.kind]
    mod = _import(module)
    if mod is None:
        raise UserError(
            f"`emostream train {args.kind}` needs the train extra ({module} cannot be imported): "
            "pip install 'emostream[train]'"
        )
    from emostream.train.config import load_config

    overrides = _parse_sets(args.set)
    overrides["run_dir"] = args.run_dir
    for key in ("encoder", "train_csv", "dev_csv"):
        if hasattr(args, key):
            overrides[key] = getattr(args, key)
    cfg = load_config(getattr(mod, cfg_name), args.train_config, overrides)
    extra = {"settings": _settings(args)} if args.kind == "text" else {}  # its encoder comes from the store
    result = getattr(mod, fn_name)(cfg, resume=not args.fresh, progress=bars(args), **extra)
    best = result.get("best", {})
    print(f"best dev weighted-F1 {best.get('weighted_f1')} accuracy {best.get('accuracy')} -> {cfg.run_dir}")
    return 0
