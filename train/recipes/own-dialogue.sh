#!/usr/bin/env bash
# Round 6 ([erc], shipped): the distilled student's own dialogue model, on top of distill.sh's RUNS_DIR
# (teacher-targets.npz, utt-kd) and spoken.sh's ASR transcripts (RUNS_DIR/asr/train.*.jsonl):
#   train/recipes/own-dialogue.sh TRAIN_CSV DEV_CSV RUNS_DIR [FOLDS] [ENCODER]
# ENCODER: the shipped student whose logits the dialogue model reads at run time (default RUNS_DIR/utt-kd/best).
# Steps (a training resumes from its last.pt, a cache is skipped when it exists):
#   1. FOLDS fold students of the shipped recipe (train/configs/text-utt-kd.toml toward teacher-targets.npz,
#      --set folds/fold; ~12.5 min each on 2 cores);
#   2. out-of-fold train caches: each fold student scores the dialogues it never saw, per text variant (gold,
#      flat, bare, and the ASR transcripts); dev caches (gold, flat) from ENCODER;
#   3. the dialogue model over the four variants, 1/4 each (train/configs/dialogue.toml) -> RUNS_DIR/dialogue-kd.
# Then: emostream train quantize --checkpoint ENCODER --dialogue RUNS_DIR/dialogue-kd --alpha 0.8 \
#         --calib-csv TRAIN_CSV --csv DEV_CSV --out DIR   (models/emostream-text/MODEL_CARD.md, round 6)
set -euo pipefail
train_csv=$1 dev_csv=$2 runs=$3 folds=${4:-3}
encoder=${5:-$runs/utt-kd/best}
cache="$runs/cache"
heard=$(ls "$runs"/asr/train.*.jsonl 2>/dev/null | paste -sd, || true)
[ -f "$runs/teacher-targets.npz" ] || { echo "$runs/teacher-targets.npz not found: run train/recipes/distill.sh first" >&2; exit 2; }
[ -n "$heard" ] || { echo "no $runs/asr/train.*.jsonl: run emostream train asr-text first (train/recipes/spoken.sh)" >&2; exit 2; }
[ -d "$encoder" ] || { echo "encoder $encoder not found: pass the shipped student's best/ folder" >&2; exit 2; }
mkdir -p "$cache"
for k in $(seq 0 $((folds - 1))); do
  emostream train text --config train/configs/text-utt-kd.toml --train-csv "$train_csv" --dev-csv "$dev_csv" \
    --run-dir "$runs/kd-f$k" --no-progress --set "folds=$folds" --set "fold=$k" \
    --set "teacher_targets=[\"$runs/teacher-targets.npz\"]"
done
features=()
for v in gold flat bare asr; do
  parts=""
  for k in $(seq 0 $((folds - 1))); do
    out="$cache/oof$folds-$k-$v.npz"; parts+="${parts:+,}$out"
    [ -f "$out" ] && continue
    if [ $v = asr ]; then how=(--transcripts "$heard"); else how=(--variant $v); fi
    emostream train features teacher --model "$runs/kd-f$k/best" --input "$train_csv" --folds "$folds" --fold "$k" \
      "${how[@]}" --context-turns 0 --out "$out"
  done
  features+=("\"$parts\"")
done
for v in gold flat; do
  out="$cache/dev-kd-$v.npz"
  [ -f "$out" ] || emostream train features teacher --model "$encoder" --input "$dev_csv" --variant $v \
    --context-turns 0 --out "$out"
done
IFS=,; list="${features[*]}"; unset IFS
emostream train dialogue --config train/configs/dialogue.toml --run-dir "$runs/dialogue-kd" \
  --set "train_features=[$list]" --set 'variant_weights=[0.25, 0.25, 0.25, 0.25]' \
  --set "dev_gold=\"$cache/dev-kd-gold.npz\"" --set "dev_flat=\"$cache/dev-kd-flat.npz\""
