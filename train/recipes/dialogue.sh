#!/usr/bin/env bash
# Round 3 ([erc]): utterance encoder + dialogue model, from MELD train/dev CSVs to a runtime folder.
#   train/recipes/dialogue.sh TRAIN_CSV DEV_CSV RUNS_DIR [FOLDS]
# Steps (each resumes or is skipped when its output exists):
#   1. the utterance encoder once per fold (train/configs/text-utt.toml, --set folds/fold) and on all of train;
#   2. out-of-fold train caches: each fold's encoder scores the dialogues it never saw, per text variant
#      (gold, flat, bare); dev caches from the all-train encoder (gold, flat);
#   3. the dialogue model on them (train/configs/dialogue.toml) -> RUNS_DIR/dialogue/{dialogue.json,dialogue.npz}.
# Then: emostream train quantize --checkpoint RUNS_DIR/utt-full/best ... and copy dialogue.* beside model.onnx.
set -euo pipefail
train_csv=$1 dev_csv=$2 runs=$3 folds=${4:-5}
cfg=train/configs/text-utt.toml
mkdir -p "$runs/cache"
for k in $(seq 0 $((folds - 1))) full; do
  sets=(); [ "$k" = full ] || sets=(--set "folds=$folds" --set "fold=$k")
  [ -d "$runs/utt-$k/best" ] && [ -f "$runs/utt-$k/metrics.json" ] && \
    [ "$(${PYTHON:-python} -c "import json,sys; print(len(json.load(open(sys.argv[1]))['history']))" "$runs/utt-$k/metrics.json")" -ge 4 ] || \
    emostream train text --config $cfg --train-csv "$train_csv" --dev-csv "$dev_csv" \
      --run-dir "$runs/utt-$k" --no-progress "${sets[@]}"
done
for v in gold flat bare; do
  parts=()
  for k in $(seq 0 $((folds - 1))); do
    out="$runs/cache/oof-$k-$v.npz"; parts+=("$out")
    [ -f "$out" ] || emostream train features teacher --model "$runs/utt-$k/best" --input "$train_csv" \
      --folds "$folds" --fold "$k" --variant $v --context-turns 0 --out "$out"
  done
  IFS=,; joined[${#joined[@]}]="\"${parts[*]}\""; unset IFS
done
for v in gold flat; do
  out="$runs/cache/dev-$v.npz"
  [ -f "$out" ] || emostream train features teacher --model "$runs/utt-full/best" --input "$dev_csv" \
    --variant $v --context-turns 0 --out "$out"
done
emostream train dialogue --config train/configs/dialogue.toml --run-dir "$runs/dialogue" \
  --set "train_features=[${joined[0]}, ${joined[1]}, ${joined[2]}]" \
  --set "dev_gold=\"$runs/cache/dev-gold.npz\"" --set "dev_flat=\"$runs/cache/dev-flat.npz\""
