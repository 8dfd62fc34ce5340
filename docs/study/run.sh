#!/usr/bin/env bash
# The powered study, start to end, resumable (run it again after any interruption: nothing finished is redone):
#   bash docs/study/run.sh ../shared/data
# 1. the alignment search on validation data (align-search.sh); 2. the chosen recipe's run becomes the sweep's
# aligned model (configs/study.yaml's align block has its settings, so the sweep reuses it instead of training it
# again); 3. the judges' validations against human labels, into the study's store, so every score carries its judge
# card and the keyword judge's corrected ASR; 4. the grid (configs/study.yaml), then its leaderboard and report.
set -euo pipefail
data=$(cd "${1:?give the data folder (../shared/data)}" && pwd)  # absolute: the finished steps' settings name it
runs=safeeval-runs/study
store=$runs/store.sqlite
chosen="b2-look-r0.5-300-lr1e-3"  # the recipe align-search.sh's revised rule chose (docs/study/README.md, section 1)
# Once the grid has started (its finished steps are kept in docs/study/cells/), a fresh machine trains the chosen
# recipe alone, not the whole search again (SEARCH=all does): the search's record is align-search.sh and the README.
kept=$(dirname "$0")/cells
if [ -n "$chosen" ] && [ -d "$kept/aligned" ] && [ "${SEARCH:-}" != all ]; then export ONLY=$chosen; fi
# Each kept grid was made on one kind of CPU (cells/: sittings 1-8's; other-cpu/: sitting 9's); on yet another, b2
# trains into other weights and no kept step is reused (README.md, section 7): archive.py check says so in minutes,
# before training. ANY_CPU=1 runs the grid anew there, unkept.
[ -n "${ANY_CPU:-}" ] || python "$(dirname "$0")/archive.py" check "$data"
bash "$(dirname "$0")/align-search.sh" "$data" "$runs"
if [ -z "$chosen" ]; then
  echo "The alignment search has not chosen a recipe yet (docs/study/README.md, section 1): the grid waits for it."
  exit 0
fi
[ -e "$runs/aligned" ] || cp -r "$runs/align-search/$chosen" "$runs/aligned"
# The steps kept in git by earlier sittings (archive.py), where this machine's aligned model is the one they used.
python "$(dirname "$0")/archive.py" restore "$data"
safeeval judge validate --judge keyword --label-set harmbench-val --data-dir "$data" --store "$store"
safeeval judge validate --judge refusal --label-set xstest-completions --data-dir "$data" --store "$store"
# On several machines: start a Ray cluster (`ray start`), then RAY=auto bash docs/study/run.sh DATA_DIR; independent
# cells run at once, one per node (the runs folder must be on a filesystem every node shares).
safeeval sweep configs/study.yaml --data-dir "$data" --store "$store" ${RAY:+--ray "$RAY"}
