#!/usr/bin/env bash
# The main job: set up once, then `ome simulate` (the embedded synthetic LLM cluster unless told otherwise).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
bash "$ROOT/hack/setup.sh"
if [ $# -eq 0 ]; then set -- simulate --policy ome,fgd,bestfit,most-allocated --seeds 5 --json out/synthetic.json --plot out/synthetic.png; fi
cd "$ROOT" && exec .venv/bin/ome "$@"
