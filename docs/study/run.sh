#!/usr/bin/env bash
# The powered study, start to end, resumable (run it again after any interruption: nothing finished is redone):
#   bash docs/study/run.sh ../shared/data
# 1. the alignment search on validation data (align-search.sh); 2. the chosen recipe's run becomes the sweep's
# aligned model (configs/study.yaml's align block has its settings, so the sweep reuses it instead of training it
# again); 3. the judges' validations against human labels, into the study's store, so every score carries its judge
# card and the keyword judge's corrected ASR; 4. the grid (configs/study.yaml), then its leaderboard and report.
set -euo pipefail
data=${1:?give the data folder (../shared/data)}
runs=safeeval-runs/study
store=$runs/store.sqlite
chosen="b2-look-r0.5-300-lr1e-3"  # the recipe align-search.sh's revised rule chose (docs/study/README.md, section 1)
bash "$(dirname "$0")/align-search.sh" "$data" "$runs"
if [ -z "$chosen" ]; then
  echo "The alignment search has not chosen a recipe yet (docs/study/README.md, section 1): the grid waits for it."
  exit 0
fi
[ -e "$runs/aligned" ] || cp -r "$runs/align-search/$chosen" "$runs/aligned"
safeeval judge validate --judge keyword --label-set harmbench-val --data-dir "$data" --store "$store"
safeeval judge validate --judge refusal --label-set xstest-completions --data-dir "$data" --store "$store"
# On several machines: start a Ray cluster (`ray start`), then RAY=auto bash docs/study/run.sh DATA_DIR; independent
# cells run at once, one per node (the runs folder must be on a filesystem every node shares).
safeeval sweep configs/study.yaml --data-dir "$data" --store "$store" ${RAY:+--ray "$RAY"}
