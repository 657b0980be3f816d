#!/usr/bin/env bash
# Step 1 of the device kit, HERE (the machine with network), before each chunk on the GPU machine:
#   bash scripts/device/prepare.sh [PARAMS...] [--wheel NAME==VERSION]... [--data-dir DIR] [--kit DIR]
# copies the four MD5-verified Fashion-MNIST files into .devkit/data (git-ignored, carried), downloads
# wheels the GPU image lacks into .devkit/wheels (none needed today), writes .devkit/commit.txt, and
# prints the travelling size and the exact device-tool call (carry list and command). One `error:`
# line and exit 1 when the tree would exceed the device's 64 MiB. See scripts/device/README.md.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
py=${PYTHON:-}
if [ -z "$py" ]; then
  if [ -x "$repo/.venv/bin/python" ]; then py=$repo/.venv/bin/python; else py=python3; fi
fi
exec "$py" "$repo/scripts/device/devkit.py" prepare "$@"
