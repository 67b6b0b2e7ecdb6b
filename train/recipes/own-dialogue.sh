#!/usr/bin/env bash
# [erc] the distilled student's own dialogue model (round 6; round 8 for the shipped L4 student), on top of
# distill.sh's RUNS_DIR (teacher-targets.npz, the student) and spoken.sh's ASR transcripts (RUNS_DIR/asr/train.*.jsonl):
#   [STUDENT_CONFIG=train/configs/text-l4-kd.toml] train/recipes/own-dialogue.sh TRAIN_CSV DEV_CSV RUNS_DIR [FOLDS] [ENCODER]
# NAME below is STUDENT_CONFIG's file name without .toml (text-l4-kd).
# ENCODER: the shipped student whose logits the dialogue model reads at run time (default RUNS_DIR/NAME/best).
# Steps (a training resumes from its last.pt, a cache is skipped when it exists):
#   1. FOLDS fold students of STUDENT_CONFIG toward teacher-targets.npz (--set folds/fold; ~13 min each on 2 cores)
#      -> RUNS_DIR/NAME-fK;
#   2. out-of-fold train caches: each fold student scores the dialogues it never saw, per text variant (gold,
#      flat, bare, and the ASR transcripts); dev caches (gold, flat) from ENCODER -> RUNS_DIR/cache-NAME;
#   3. the dialogue model over the four variants, weights gold/flat/bare/ASR 0.25/0.25/0.1/0.4, seeds 1-6 (round 8's
#      choice on dev; round 6 used 1/4 each, seeds 1-3) (train/configs/dialogue.toml) -> RUNS_DIR/dialogue-NAME.
# Then: emostream train quantize --checkpoint ENCODER --dialogue RUNS_DIR/dialogue-NAME --alpha 0.8 \
#         --calib-csv TRAIN_CSV --csv DEV_CSV --out DIR   (models/emostream-text/MODEL_CARD.md, round 8)
set -euo pipefail
train_csv=$1 dev_csv=$2 runs=$3 folds=${4:-3}
student=${STUDENT_CONFIG:-train/configs/text-l4-kd.toml}
name=$(basename "$student" .toml)
encoder=${5:-$runs/$name/best}
cache="$runs/cache-$name"
heard=$(ls "$runs"/asr/train.*.jsonl 2>/dev/null | paste -sd, || true)
[ -f "$runs/teacher-targets.npz" ] || { echo "$runs/teacher-targets.npz not found: run train/recipes/distill.sh first" >&2; exit 2; }
[ -n "$heard" ] || { echo "no $runs/asr/train.*.jsonl: run emostream train asr-text first (train/recipes/spoken.sh)" >&2; exit 2; }
[ -d "$encoder" ] || { echo "encoder $encoder not found: pass the shipped student's best/ folder" >&2; exit 2; }
mkdir -p "$cache"
for k in $(seq 0 $((folds - 1))); do
  emostream train text --config "$student" --train-csv "$train_csv" --dev-csv "$dev_csv" \
    --run-dir "$runs/$name-f$k" --no-progress --set "folds=$folds" --set "fold=$k" \
    --set "teacher_targets=[\"$runs/teacher-targets.npz\"]"
done
features=()
for v in gold flat bare asr; do
  parts=""
  for k in $(seq 0 $((folds - 1))); do
    out="$cache/oof$folds-$k-$v.npz"; parts+="${parts:+,}$out"
    [ -f "$out" ] && continue
    if [ $v = asr ]; then how=(--transcripts "$heard"); else how=(--variant $v); fi
    emostream train features teacher --model "$runs/$name-f$k/best" --input "$train_csv" --folds "$folds" --fold "$k" \
      "${how[@]}" --context-turns 0 --out "$out"
  done
  features+=("\"$parts\"")
done
for v in gold flat; do
  out="$cache/dev-$v.npz"
  [ -f "$out" ] || emostream train features teacher --model "$encoder" --input "$dev_csv" --variant $v \
    --context-turns 0 --out "$out"
done
IFS=,; list="${features[*]}"; unset IFS
emostream train dialogue --config train/configs/dialogue.toml --run-dir "$runs/dialogue-$name" \
  --set "train_features=[$list]" --set 'variant_weights=[0.25, 0.25, 0.1, 0.4]' --set 'seeds=[1, 2, 3, 4, 5, 6]' \
  --set "dev_gold=\"$cache/dev-gold.npz\"" --set "dev_flat=\"$cache/dev-flat.npz\""
