#!/usr/bin/env bash
# The provider-alignment search of the powered study (docs/study/README.md, section 1), fixed before any result:
# two recipes, each trained from the packaged SmolLM2-135M-Instruct and scored on validation data only
# (HarmBench's val split, the held-out quarter of Dolly, safeeval's own borderline-safe validation prompts).
# Never AdvBench, Self-Instruct or XSTest. Choice rule: among the recipes whose HarmBench-val ASR is at most 10%
# under both judges, the lowest mean benign refusal (refusal judge) over benign-dolly-val and borderline-val;
# ties go to fewer steps; if none qualifies, the lowest HarmBench-val ASR under the refusal judge.
# Resumable: finished runs are not retrained and the store serves finished generations.
# Usage: bash docs/study/align-search.sh DATA_DIR [RUNS]
set -euo pipefail
data=${1:?give the data folder (../shared/data)}
runs=${2:-safeeval-runs/study}
store=$runs/store.sqlite
mkdir -p "$runs/align-search"
candidate() {  # name task ratio steps
  local out=$runs/align-search/$1
  safeeval train-and-score --base smollm2 --task "$2" --method er --option "ratio=$3" --safety safety-llamas \
    --steps "$4" --batch-size 8 --lr 2e-4 --max-length 256 --save-steps 50 --save-merged --seed 0 \
    --out "$out" --data-dir "$data" --store "$store" \
    --tasks harmbench:val,benign-dolly-val,borderline-val --judges keyword,refusal --max-new-tokens 48 \
    --score-out "$out/validation"
}
# No control without look-alikes: a recipe trains 10 s a step here, and the old recipe's over-refusal is on record
# (docs/mini-repro: 60% of Self-Instruct refused).
candidate a2-look-r0.5-150 dolly-train+borderline-safe 0.5 150
candidate a3-look-r0.3-150 dolly-train+borderline-safe 0.3 150
# A third recipe (a4: ratio 0.3, 250 steps) was dropped before any result: at 10-20 s a step on this machine it
# would have cost the time of three grid cells.
