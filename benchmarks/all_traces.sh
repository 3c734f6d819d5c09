#!/usr/bin/env bash
# Replays every openb trace in $OME_TRACE_DIR with the given policies (default: ome,bestfit),
# 10 seeds from 42, writing out/traces/<trace>.json; then prints the comparison table.
# OPTIMUM_SECONDS=10 also solves the offline optimum at 100 % arrived for the same seeds
# (bench_optimum.py, that many seconds per seed, into $OUT/optimum/) and adds it to the table;
# PLOT=path.png draws every trace in one grid. Existing reports are reused, not redone.
set -euo pipefail
cd "$(dirname "$0")/.."
POLICIES=${POLICIES:-ome,bestfit}
SEEDS=${SEEDS:-10}
FIRST=${FIRST_SEED:-42}
OUT=${OUT:-out/traces}
mkdir -p "$OUT"
seed_list=$(seq -s, "$FIRST" $((FIRST + SEEDS - 1)))
for f in "$OME_TRACE_DIR"/openb_pod_list_*.csv; do
  name=$(basename "$f" .csv); name=${name#openb_pod_list_}
  [ -f "$OUT/$name.json" ] && continue
  .venv/bin/ome simulate --trace "$name" --policy "$POLICIES" --seeds "$SEEDS" --first-seed "$FIRST" --json "$OUT/$name.json" > "$OUT/$name.log" 2>&1
done
extra=()
if [ -n "${OPTIMUM_SECONDS:-}" ]; then
  mkdir -p "$OUT/optimum"
  for f in "$OME_TRACE_DIR"/openb_pod_list_*.csv; do
    name=$(basename "$f" .csv); name=${name#openb_pod_list_}
    [ -f "$OUT/optimum/$name.json" ] && continue
    .venv/bin/python benchmarks/bench_optimum.py --trace "$name" --seeds "$seed_list" --levels 100 \
      --seconds "$OPTIMUM_SECONDS" > "$OUT/optimum/$name.tmp" && mv "$OUT/optimum/$name.tmp" "$OUT/optimum/$name.json"
  done
  extra+=(--optimum "$OUT/optimum")
fi
[ -n "${PLOT:-}" ] && extra+=(--plot "$PLOT")
.venv/bin/python benchmarks/compare_fgd.py "$OUT" "${extra[@]}"
