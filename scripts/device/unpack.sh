#!/usr/bin/env bash
# Step 3 of the device kit, HERE: bash scripts/device/unpack.sh INDIR [--results-root DIR]
# INDIR: the folder the device tool copied $OUT into (files_at). Checks the SHA-256 of every part
# and file against manifest.json, joins the parts, extracts into results/ (or $ALKIT_RESULTS /
# --results-root) refusing absolute paths, '..', links and anything outside results/, then prints
# which runs and cycles arrived. Nothing is written unless every check passes.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
[ $# -ge 1 ] || { echo "usage: bash scripts/device/unpack.sh INDIR [--results-root DIR]" >&2; exit 2; }
py=${PYTHON:-}
if [ -z "$py" ]; then
  if [ -x "$repo/.venv/bin/python" ]; then py=$repo/.venv/bin/python; else py=python3; fi
fi
export ALKIT_RESULTS=${ALKIT_RESULTS:-$repo/results}
exec "$py" "$repo/scripts/device/devkit.py" unpack "$@"
