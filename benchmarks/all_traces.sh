#!/usr/bin/env bash
# Replays every openb trace in $OME_TRACE_DIR with the given policies (default: ome,bestfit),
# 10 seeds from 42, writing out/traces/<trace>.json; then prints the comparison table.
set -euo pipefail
cd "$(dirname "$0")/.."
POLICIES=${POLICIES:-ome,bestfit}
SEEDS=${SEEDS:-10}
FIRST=${FIRST_SEED:-42}
OUT=${OUT:-out/traces}
mkdir -p "$OUT"
for f in "$OME_TRACE_DIR"/openb_pod_list_*.csv; do
  name=$(basename "$f" .csv); name=${name#openb_pod_list_}
  [ -f "$OUT/$name.json" ] && continue
  .venv/bin/ome simulate --trace "$name" --policy "$POLICIES" --seeds "$SEEDS" --first-seed "$FIRST" --json "$OUT/$name.json" > "$OUT/$name.log" 2>&1
done
.venv/bin/python benchmarks/compare_fgd.py "$OUT"
