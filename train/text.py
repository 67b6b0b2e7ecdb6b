"""Text-teacher training: MiniLM over past-only dialogue prompts, EMA self-distillation, P2E curriculum.

Per epoch e (1-based) the curriculum sets the context: ``curriculum[e-1]`` = 0 means the current utterance
only (perception), N > 0 means the whole past left-truncated to N tokens (understanding). Epochs before
``kd_start_epoch`` use (weighted) CE only; later ones alpha*CE + (1-alpha)*tau^2*KL to an EMA copy of
the model (updated every step, decay 0.99). Dev is always scored at the final context budget, for the
model and its EMA copy; the best of them on dev weighted-F1 is saved as ``<run>/best/`` (HF folder,
emostream.train.text_model.save_hf). ``<run>/last.pt`` holds everything needed to resume after the last epoch.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emostream.config import Settings
from emostream.errors import UserError
from emostream.evaluation.meld import MeldSplit, read_meld, text_variant
from emostream.inference.prompt import PromptBuilder
from emostream.schema import EMOTIONS
from emostream.train.config import resolve_model_path
from emostream.train.losses import class_weights, ema_update, self_distill_loss
from emostream.train.metrics import scores
from emostream.train.teacher_targets import TeacherTargets
from emostream.train.text_data import (
    Example,
    bucketed_batches,
    collate,
    context_setting,
    encode_split,
    eval_batches,
    spoken_noise,
)
from emostream.train.text_model import TextTeacher, build_teacher, load_tokenizer, meta_for, save_hf

log = logging.getLogger("emostream.train.text")


@dataclass
class TextConfig:
    """Text-teacher hyperparameters (defaults: DDVLM Table 2 where it applies, else measured here)."""

    train_csv: str = ""
    """MELD train CSV (train_sent_emo.csv)."""
    dev_csv: str = ""
    """MELD dev CSV used for per-epoch scoring and model selection."""
    encoder: str = ""
    """Encoder folder; empty = the model store's ``encoder_model``."""
    encoder_model: str = "all-MiniLM-L6-v2"
    """Model-store name of the encoder read when ``encoder`` is empty."""
    encoder_layers: int = 0
    """Keep only the encoder's lowest N transformer layers (0 = all): a shallow student cut from a larger
    encoder (text-l4-kd.toml: mpnet's first 4 of 12)."""
    run_dir: str = "train/runs/text"
    """Output folder (checkpoints, metrics.json, best/, plots)."""
    max_tokens: int = 128
    """Final context budget in tokens (including [CLS], prompt and [SEP])."""
    curriculum: list[int] = field(default_factory=lambda: [0, 64, 128, 128])
    """Context per epoch (its length = number of epochs): 0 = current utterance only, N = N-token budget."""
    batch_size: int = 16
    eval_batch_size: int = 64
    lr_encoder: float = 6e-5
    lr_head: float = 1e-3
    """The randomly initialised head learns faster than the pretrained encoder."""
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    """Linear warm-up over this fraction of all steps, then linear decay to 0."""
    dropout: float = 0.1
    class_weight_power: float = 0.25
    """CE class weights (n_max/n_c)^power: mild help for fear/disgust without sinking weighted-F1."""
    self_distill: bool = True
    kd_start_epoch: int = 2
    """First epoch with the EMA KD term (CE only before)."""
    ema_decay: float = 0.99
    kd_alpha: float = 0.7
    kd_tau: float = 2.0
    grad_clip: float = 1.0
    seed: int = 13
    threads: int = 2
    bucket_batches: int = 50
    train_limit: int = 0
    """Use only the first N training utterances (0 = all); for reduced ablations and tests."""
    dev_limit: int = 0
    log_every: int = 50
    status_file: str = ""
    """Optional markdown file rewritten with progress after every epoch."""
    freeze_word_embeddings: bool = True
    """Keep the 30k x 384 token-embedding table fixed (half the parameters; the speaker tokens keep their
    "speaker"+digit init). Saves optimizer time on this CPU; its effect on accuracy was not ablated."""
    freeze_layers: int = 0
    """Keep the embeddings and the lowest N transformer layers fixed: no backward pass through them (an mpnet
    step, batch 16, 2 cores: 2.4 s in a short probe with none frozen, 1.3 s in training with 4 frozen)."""
    eval_context: int = -1
    """Context for dev scoring: -1 = the final budget ``max_tokens`` with the whole past; 0 = current
    utterance only (for the context-0 ablation)."""
    punct_flat: float = 0.0
    """Punctuation dropout: per epoch, the share of train utterances whose ``!``/``?`` become ``.``."""
    punct_bare: float = 0.0
    """Per epoch, the share of train utterances with all punctuation removed (on top of punct_flat)."""
    asr_text: list[str] = field(default_factory=list)
    """ASR-noise augmentation: transcript caches of the train CSV (`emostream train asr-text`, shards)."""
    p_asr: float = 0.0
    """Per epoch, the share of train utterances read as their cached transcript (before punct dropout)."""
    teacher_targets: list[str] = field(default_factory=list)
    """KD from a larger teacher (`emostream train teacher-targets`): from ``kd_start_epoch`` the KD term
    pulls toward the teacher's logits for the text read instead of the EMA copy's (which then only
    competes at selection)."""
    kd_loss: str = "kl"
    """Response KD: ``kl`` (Hinton, tau^2 KL) or ``dist`` (DDVLM's Pearson inter/intra-class relations)."""
    select_on: str = "gold"
    """Dev selection score: ``gold`` wF1, or ``mean`` of gold and ``flat`` (punctuation-flattened) wF1."""
    folds: int = 0
    """K-fold training (0 = off): train on the dialogues with ``dialogue_id % folds != fold`` only, so the
    held-out fold can be scored by a model that never saw it (out-of-fold features for a dialogue model)."""
    fold: int = 0
    """Which fold is held out (0 <= fold < folds)."""
    stop_at: str = ""
    """Optional UTC wall-clock "HH:MM" (its next occurrence after the run starts): past it, the current epoch
    ends early and is scored and saved."""


def stop_deadline(stop_at: str, now: float) -> float | None:
    """Epoch seconds of the next UTC ``HH:MM`` after ``now`` (None when unset).

    Fixed once when the run (or its resume) starts, so a stop time past midnight ("01:30" set at 23:50)
    means tomorrow's 01:30, not "already past" today.
    """
    if not stop_at:
        return None
    try:
        hh, mm = (int(x) for x in stop_at.split(":"))
    except ValueError:
        hh = mm = -1
    if not (0 <= hh < 24 and 0 <= mm < 60):
        raise UserError(f'stop_at must be a UTC time HH:MM (e.g. "01:30"), not {stop_at!r}')
    t = time.gmtime(now)
    deadline = now - (t.tm_hour * 3600 + t.tm_min * 60 + t.tm_sec) + hh * 3600 + mm * 60
    return deadline if deadline > now else deadline + 86400


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.time() >= deadline


def fold_split(split: MeldSplit, folds: int, fold: int, held_out: bool) -> MeldSplit:
    """The dialogues of fold ``fold`` of ``folds`` (by dialogue id), or all the others."""
    keep = {d: u for d, u in split.dialogues.items() if (d % folds == fold) == held_out}
    return MeldSplit(keep, split.skipped)


def asr_transcripts(paths: list[str], split: MeldSplit) -> dict[tuple[int, int], str]:
    """The transcript caches merged, checked to cover the train split (a wrong CSV's cache would not)."""
    from emostream.evaluation.transcripts import load_transcripts

    if not paths:
        raise UserError("p_asr > 0 needs asr_text = [cache files] (`emostream train asr-text`)")
    heard = load_transcripts(*paths)
    keys = [(u.dialogue, u.index) for d in split.dialogues.values() for u in d]
    covered = sum(k in heard for k in keys) / max(1, len(keys))
    if covered < 0.9:
        raise UserError(
            f"ASR transcripts {paths} cover {covered:.0%} of train: finish `train asr-text` first"
        )
    log.info("ASR transcripts for %.1f%% of train utterances", 100 * covered)
    return heard


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@torch.no_grad()
def predict(model: TextTeacher, examples: list[Example], batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(logits [N, 7], h [N, hidden]) in the order of ``examples``."""
    was_training = model.training
    model.eval()
    logits = np.zeros((len(examples), len(EMOTIONS)), dtype=np.float32)
    hidden: np.ndarray | None = None
    for idx, batch in eval_batches(examples, batch_size):
        b = collate(batch)
        h, z = model(b.input_ids, b.attention_mask, b.mask_pos)
        if hidden is None:
            hidden = np.zeros((len(examples), h.shape[1]), dtype=np.float32)
        logits[idx] = z.numpy()
        hidden[idx] = h.numpy()
    model.train(was_training)
    return logits, hidden if hidden is not None else np.zeros((0, 0), dtype=np.float32)


def _schedule(total: int, warmup: int) -> Any:
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return f


def _write_status(cfg: TextConfig, history: list[dict[str, Any]], note: str) -> None:
    if not cfg.status_file:
        return
    lines = [f"# [erc] text teacher status ({time.strftime('%H:%M UTC', time.gmtime())})", "", note, ""]
    lines += [
        "| epoch | context | which | dev wF1 | dev acc | train loss | epoch min |",
        "|---|---|---|---|---|---|---|",
    ]
    for h in history:
        for which in ("model", "ema"):
            if which in h:
                d = h[which]
                lines.append(
                    f"| {h['epoch']} | {h['context']} | {which} | {d['weighted_f1']} | {d['accuracy']} | "
                    f"{h['train_loss']:.4f} | {h['minutes']:.1f} |"
                )
    Path(cfg.status_file).write_text("\n".join(lines) + "\n")


def train_text(
    cfg: TextConfig, settings: Settings, resume: bool = True, progress: bool = True
) -> dict[str, Any]:
    """Run (or resume) a text-teacher training; returns the final metrics dict (also metrics.json)."""
    deadline = stop_deadline(cfg.stop_at, time.time())  # before any work: a bad value fails at once
    torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    run = Path(cfg.run_dir).resolve()
    run.mkdir(parents=True, exist_ok=True)
    encoder_path = resolve_model_path(cfg.encoder, cfg.encoder_model, settings)
    tok = load_tokenizer(encoder_path)
    train_split, dev_split = read_meld(cfg.train_csv), read_meld(cfg.dev_csv)
    if cfg.folds:
        if not 0 <= cfg.fold < cfg.folds:
            raise UserError(f"fold must be in 0..{cfg.folds - 1}, not {cfg.fold}")
        train_split = fold_split(train_split, cfg.folds, cfg.fold, held_out=False)
    log.info(
        "train %d utterances (skipped %s), dev %d",
        len(train_split),
        dict(train_split.skipped),
        len(dev_split),
    )

    if cfg.kd_loss not in ("kl", "dist"):
        raise UserError(f"kd_loss must be kl or dist, not {cfg.kd_loss!r}")
    targets = TeacherTargets(cfg.teacher_targets) if cfg.teacher_targets else None
    noisy = cfg.punct_flat > 0 or cfg.punct_bare > 0 or cfg.p_asr > 0
    heard = asr_transcripts(cfg.asr_text, train_split) if cfg.p_asr > 0 else {}

    def examples_for(context: int, epoch: int = 0) -> list[Example]:
        max_tokens, past = context_setting(context, cfg.max_tokens)
        seed = cfg.seed * 1000 + epoch
        augment = spoken_noise(seed, cfg.punct_flat, cfg.punct_bare, heard, cfg.p_asr) if noisy else None
        return encode_split(
            train_split, PromptBuilder(tok.backend_tokenizer, max_tokens), past, cfg.train_limit, augment
        )

    cache: dict[int, list[Example]] = {}
    dev_tokens, dev_past = context_setting(
        cfg.max_tokens if cfg.eval_context < 0 else cfg.eval_context, cfg.max_tokens
    )
    dev_builder = PromptBuilder(tok.backend_tokenizer, dev_tokens)
    dev = encode_split(dev_split, dev_builder, dev_past, cfg.dev_limit)
    flat = lambda u: text_variant(u.text, "flat")  # noqa: E731
    dev_flat = encode_split(dev_split, dev_builder, dev_past, cfg.dev_limit, flat)
    if cfg.select_on not in ("gold", "mean"):
        raise UserError(f"select_on must be gold or mean, not {cfg.select_on!r}")
    counts = [0] * len(EMOTIONS)
    for e in examples_for(cfg.curriculum[0]):
        counts[e.label] += 1
    weight = class_weights(counts, cfg.class_weight_power)
    if targets is not None:
        covered = targets.coverage(examples_for(cfg.curriculum[0], 1))
        if covered < 1.0:
            raise UserError(
                f"teacher targets {cfg.teacher_targets} cover {covered:.1%} of train texts: rebuild them"
            )
        log.info("KD from %d cached teacher targets (%s)", len(targets), cfg.kd_loss)
    log.info("class weights %s", dict(zip(EMOTIONS, [round(float(w), 3) for w in weight], strict=True)))

    model = build_teacher(encoder_path, tok, cfg.dropout, cfg.encoder_layers)
    if cfg.freeze_word_embeddings:
        model.encoder.embeddings.word_embeddings.weight.requires_grad_(False)  # type: ignore[union-attr]
    if cfg.freeze_layers:
        frozen = [model.encoder.embeddings, *model.encoder.encoder.layer[: cfg.freeze_layers]]  # type: ignore[union-attr,index]
        for module in frozen:
            module.requires_grad_(False)
    ema = copy.deepcopy(model).eval() if cfg.self_distill else None
    head_params = list(model.head.parameters())
    enc_params = [p for n, p in model.named_parameters() if not n.startswith("head.") and p.requires_grad]
    opt = torch.optim.AdamW(
        [{"params": enc_params, "lr": cfg.lr_encoder}, {"params": head_params, "lr": cfg.lr_head}],
        weight_decay=cfg.weight_decay,
        fused=True,
    )
    n_train = len(examples_for(cfg.curriculum[0]))
    steps_per_epoch = math.ceil(n_train / cfg.batch_size)
    total = steps_per_epoch * len(cfg.curriculum)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(total, int(cfg.warmup_ratio * total)))
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"weighted_f1": -1.0}
    start_epoch = 1
    ckpt = run / "last.pt"
    if resume and ckpt.exists():
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        if ema is not None and state.get("ema") is not None:
            ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        history, best, start_epoch = state["history"], state["best"], state["epoch"] + 1
        torch.set_rng_state(state["torch_rng"])
        log.info("resumed from %s after epoch %d", ckpt, state["epoch"])
    (run / "config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    wall0 = time.time() - sum(h["minutes"] for h in history) * 60

    for epoch in range(start_epoch, len(cfg.curriculum) + 1):
        context = cfg.curriculum[epoch - 1]
        if noisy:
            cache = {context: examples_for(context, epoch)}  # fresh punctuation draw every epoch
        elif context not in cache:
            cache[context] = examples_for(context)
        batches = bucketed_batches(cache[context], cfg.batch_size, cfg.seed + epoch, cfg.bucket_batches)
        use_kd = (ema is not None or targets is not None) and epoch >= cfg.kd_start_epoch
        model.train()
        t0, loss_sum = time.time(), 0.0
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(batches), desc=f"epoch {epoch} ctx {context}", mininterval=20, unit="step")
        for step, chunk in enumerate(batches, 1):
            b = collate(chunk)
            _, logits = model(b.input_ids, b.attention_mask, b.mask_pos)
            kd_logits = None
            if use_kd and targets is not None:
                kd_logits = targets.batch(chunk)
            elif use_kd and ema is not None:
                with torch.no_grad():
                    _, kd_logits = ema(b.input_ids, b.attention_mask, b.mask_pos)
            loss = self_distill_loss(
                logits, b.labels, kd_logits, cfg.kd_alpha, cfg.kd_tau, weight, cfg.kd_loss
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            if ema is not None:
                ema_update(ema, model, cfg.ema_decay)
            loss_sum += loss.item()
            if bar is not None:
                bar.update(1)
            if _past(deadline):
                log.warning(
                    "stop_at %s reached: ending epoch %d after %d/%d steps",
                    cfg.stop_at,
                    epoch,
                    step,
                    len(batches),
                )
                batches = batches[:step]
                break
            if step % cfg.log_every == 0 or step == len(batches):
                rate = (time.time() - t0) / step
                log.info(
                    "epoch %d step %d/%d loss %.4f %.2fs/step eta %.1f min",
                    epoch,
                    step,
                    len(batches),
                    loss_sum / step,
                    rate,
                    rate * (len(batches) - step) / 60,
                )
        if bar is not None:
            bar.close()
        entry: dict[str, Any] = {
            "epoch": epoch,
            "context": context,
            "kd": use_kd,
            "steps": len(batches),
            "train_loss": loss_sum / max(1, len(batches)),
        }
        candidates = [("model", model)] + ([("ema", ema)] if ema is not None and epoch > 1 else [])
        for which, net in candidates:
            logits_np, _ = predict(net, dev, cfg.eval_batch_size)
            entry[which] = scores([e.label for e in dev], logits_np.argmax(1).tolist())
            flat_np, _ = predict(net, dev_flat, cfg.eval_batch_size)
            entry[which + "_flat"] = scores([e.label for e in dev_flat], flat_np.argmax(1).tolist())
            entry[which]["flat_weighted_f1"] = entry[which + "_flat"]["weighted_f1"]
            gold_f1, flat_f1 = entry[which]["weighted_f1"], entry[which]["flat_weighted_f1"]
            entry[which]["select"] = gold_f1 if cfg.select_on == "gold" else round((gold_f1 + flat_f1) / 2, 2)
            log.info(
                "epoch %d dev[%s] wF1 %.2f (flat %.2f) acc %.2f per-class %s",
                epoch,
                which,
                gold_f1,
                flat_f1,
                entry[which]["accuracy"],
                entry[which]["per_class_f1"],
            )
            if entry[which]["select"] > best.get("select", -1.0):
                best = {**entry[which], "epoch": epoch, "which": which}
                meta = meta_for(cfg.max_tokens, int(net.head.in_features), dev=best, seed=cfg.seed)
                if cfg.eval_context == 0:
                    meta["context_turns"] = 0  # the encoder reads the current utterance only
                save_hf(net, tok, run / "best", meta)
                log.info("saved best (%s, epoch %d) to %s", which, epoch, run / "best")
        entry["minutes"] = (time.time() - t0) / 60
        history.append(entry)
        torch.save(
            {
                "model": model.state_dict(),
                "ema": ema.state_dict() if ema is not None else None,
                "opt": opt.state_dict(),
                "sched": sched.state_dict(),
                "epoch": epoch,
                "history": history,
                "best": best,
                "torch_rng": torch.get_rng_state(),
            },
            ckpt,
        )
        result = {
            "config": asdict(cfg),
            "history": history,
            "best": best,
            "wall_minutes": (time.time() - wall0) / 60,
        }
        (run / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
        _write_status(
            cfg,
            history,
            f"run {run}: epoch {epoch}/{len(cfg.curriculum)} done; best so far {best.get('which')} "
            f"epoch {best.get('epoch')} wF1 {best['weighted_f1']} acc {best.get('accuracy')}; best/ = {run / 'best'}",
        )
        if _past(deadline):
            break
    result = {
        "config": asdict(cfg),
        "history": history,
        "best": best,
        "wall_minutes": (time.time() - wall0) / 60,
    }
    (run / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    try:  # imported late on purpose: the report code may be newer than this long-running process
        from emostream.train.report import write_text_report

        write_text_report(run)
    except Exception as exc:  # a plotting failure must not lose a finished training
        log.warning("report not written: %s", exc)
    return result
