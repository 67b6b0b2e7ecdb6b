#!/usr/bin/env bash
# [erc] spoken-text round on top of train/recipes/dialogue.sh's RUNS_DIR (its fold encoders and utt-full):
#   train/recipes/spoken.sh TRAIN_CSV DEV_CSV RUNS_DIR [FOLDS]
# Steps (each skipped when its output exists):
#   1. Whisper transcripts of espeak-ng speech of every train and dev line (two shards on two cores);
#   2. the ASR-augmented utterance encoder on all of train (train/configs/text-utt-asr.toml);
#   3. out-of-fold ASR-text caches from the fold encoders;
#   4. the dialogue model on four text variants (gold, flat, bare, ASR), epochs picked on utt-full's dev
#      caches as in dialogue.sh;
#   5. the weight average of utt-full and utt-asr (same MiniLM start, different text noise) -> RUNS_DIR/soup.
# Then: emostream train quantize --checkpoint RUNS_DIR/soup/ --dialogue RUNS_DIR/dialogue-spoken ...
set -euo pipefail
train_csv=$1 dev_csv=$2 runs=$3 folds=${4:-5}
asr="$runs/asr"; cache="$runs/cache"
mkdir -p "$asr" "$cache"
for i in 0 1; do
  emostream train asr-text --csv "$train_csv" --out "$asr/train.$i.jsonl" --shard "$i/2" &
done
wait
emostream train asr-text --csv "$dev_csv" --out "$asr/dev.jsonl"
heard="$asr/train.0.jsonl,$asr/train.1.jsonl"
[ -d "$runs/utt-asr/best" ] || emostream train text --config train/configs/text-utt-asr.toml \
  --train-csv "$train_csv" --dev-csv "$dev_csv" --run-dir "$runs/utt-asr" --no-progress \
  --set "asr_text=[\"$asr/train.0.jsonl\", \"$asr/train.1.jsonl\"]"
joined() {  # "cache/oof-0-V.npz,...,cache/oof-(FOLDS-1)-V.npz", quoted for a TOML list
  local v=$1 k out=""
  for k in $(seq 0 $((folds - 1))); do out+="${out:+,}$cache/oof-$k-$v.npz"; done
  printf '"%s"' "$out"
}
for k in $(seq 0 $((folds - 1))); do
  out="$cache/oof-$k-asr.npz"
  [ -f "$out" ] || emostream train features teacher --model "$runs/utt-$k/best" --input "$train_csv" \
    --folds "$folds" --fold "$k" --context-turns 0 --transcripts "$heard" --out "$out"
done
emostream train dialogue --config train/configs/dialogue.toml --run-dir "$runs/dialogue-spoken" \
  --set "train_features=[$(joined gold), $(joined flat), $(joined bare), $(joined asr)]" \
  --set "variant_weights=[0.25, 0.25, 0.25, 0.25]" \
  --set "dev_gold=\"$cache/dev-gold.npz\"" --set "dev_flat=\"$cache/dev-flat.npz\""
[ -d "$runs/soup" ] || emostream train average --checkpoint "$runs/utt-full/best" \
  --state "$runs/utt-full/best" --state "$runs/utt-asr/best" --out "$runs/soup"
