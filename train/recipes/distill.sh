#!/usr/bin/env bash
# [erc] a larger teacher distilled into the MiniLM runtime student:
#   train/recipes/distill.sh TRAIN_CSV DEV_CSV RUNS_DIR [MPNET_DIR]
# Steps (each skipped when its output exists):
#   1. the all-mpnet-base-v2 teacher on utterances alone (train/configs/teacher-mpnet.toml, ~14 min/epoch);
#   2. its logits for every form (gold, flat, bare; + ASR transcripts when RUNS_DIR/asr/train.*.jsonl exist)
#      of every train line (`emostream train teacher-targets`);
#   3. the MiniLM student toward those targets (train/configs/text-utt-kd.toml, DDVLM Pearson KD).
# Then, as for round 3: emostream train quantize --checkpoint RUNS_DIR/utt-kd/best --dialogue ... (train/README.md).
set -euo pipefail
train_csv=$1 dev_csv=$2 runs=$3
mpnet=${4:-$(emostream models path all-mpnet-base-v2)}
mkdir -p "$runs"
[ -d "$runs/teacher-mpnet/best" ] || emostream train text --config train/configs/teacher-mpnet.toml \
  --encoder "$mpnet" --train-csv "$train_csv" --dev-csv "$dev_csv" --run-dir "$runs/teacher-mpnet" --no-progress
heard=$(ls "$runs"/asr/train.*.jsonl 2>/dev/null | paste -sd, || true)
[ -f "$runs/teacher-targets.npz" ] || emostream train teacher-targets --teacher "$runs/teacher-mpnet/best" \
  --csv "$train_csv" --out "$runs/teacher-targets.npz" ${heard:+--transcripts "$heard"}
emostream train text --config train/configs/text-utt-kd.toml --train-csv "$train_csv" --dev-csv "$dev_csv" \
  --run-dir "$runs/utt-kd" --no-progress --set "teacher_targets=[\"$runs/teacher-targets.npz\"]"
