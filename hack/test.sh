#!/usr/bin/env bash
# The whole test suite: set-up, control-plane binaries (built once, cached), layering check, all tests.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost
bash hack/setup.sh
if [ -z "${OME_TRACE_DIR:-}" ] && [ -d ../shared/data/alibaba-gpu-2023 ]; then
  export OME_TRACE_DIR=$(cd ../shared/data/alibaba-gpu-2023 && pwd)
fi
if command -v go >/dev/null 2>&1; then
  bash hack/build-controlplane.sh
elif [ "${CI:-}" = "true" ]; then
  echo "test: the Go toolchain is missing; the control-plane tests cannot run in CI" >&2; exit 1
fi
.venv/bin/lint-imports
exec .venv/bin/python -m pytest "$@"
