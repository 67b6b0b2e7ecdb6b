#!/usr/bin/env bash
# [erc] a larger teacher distilled into the runtime student:
#   train/recipes/distill.sh TRAIN_CSV DEV_CSV RUNS_DIR [MPNET_DIR]
# Steps (each skipped when its output exists):
#   1. the all-mpnet-base-v2 teacher on utterances alone (train/configs/teacher-mpnet.toml, ~14 min/epoch);
#   2. its logits for every form (gold, flat, bare; + ASR transcripts when RUNS_DIR/asr/train.*.jsonl exist)
#      of every train line (`emostream train teacher-targets`);
#   3. the student toward those targets, DDVLM Pearson KD: STUDENT_CONFIG (default train/configs/text-l4-kd.toml,
#      mpnet's lowest 4 layers, shipped since round 8; text-utt-kd.toml is round 5's MiniLM student)
#      -> RUNS_DIR/<config name>/best.
# Then train/recipes/own-dialogue.sh and emostream train quantize (train/README.md).
set -euo pipefail
train_csv=$1 dev_csv=$2 runs=$3
mpnet=${4:-$(emostream models path all-mpnet-base-v2)}
mkdir -p "$runs"
[ -d "$runs/teacher-mpnet/best" ] || emostream train text --config train/configs/teacher-mpnet.toml \
  --encoder "$mpnet" --train-csv "$train_csv" --dev-csv "$dev_csv" --run-dir "$runs/teacher-mpnet" --no-progress
heard=$(ls "$runs"/asr/train.*.jsonl 2>/dev/null | paste -sd, || true)
[ -f "$runs/teacher-targets.npz" ] || emostream train teacher-targets --teacher "$runs/teacher-mpnet/best" \
  --csv "$train_csv" --out "$runs/teacher-targets.npz" ${heard:+--transcripts "$heard"}
student=${STUDENT_CONFIG:-train/configs/text-l4-kd.toml}
emostream train text --config "$student" --train-csv "$train_csv" --dev-csv "$dev_csv" \
  --run-dir "$runs/$(basename "$student" .toml)" --no-progress --set "teacher_targets=[\"$runs/teacher-targets.npz\"]"
