#!/usr/bin/env bash
# Everything a fresh machine needs before `make figures` or `make test`:
#  1. Debian packages where apt is available: the Fashion-MNIST files (dataset-fashion-mnist) and
#     chromium for static figure export. Elsewhere alkit downloads the data (checksummed) on first use.
#  2. A virtualenv in .venv with the exact versions of requirements/constraints.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || need+=(dataset-fashion-mnist)
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
    echo "setup: apt-get install ${need[*]}"
    if ! ($sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null); then
      echo "setup: WARNING: could not apt-get install ${need[*]}; data will be downloaded on first use," \
           "static PNG/SVG export needs a chromium on PATH" >&2
    fi
  else
    echo "setup: no apt-get; Fashion-MNIST will be downloaded (checksummed) to ~/.cache/alkit on first use" >&2
  fi
fi

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip=(.venv/bin/python -m pip install -q --disable-pip-version-check -c requirements/constraints.txt)
# uv installs the same pinned set as pip (130 packages, identical `pip freeze`) in ~27 s instead of
# ~95 s on a fresh 2-core machine. --compile-bytecode as pip does: where PYTHONDONTWRITEBYTECODE is set
# (these machines), a venv without .pyc files recompiles every import in every process (make test took
# 688 s instead of ~520). uv reads no pip.conf, so pip's find-links (a local torch wheel) are passed on;
# if uv cannot be had or fails, pip does it all as before.
links=()
for d in ${PIP_FIND_LINKS:-}; do links+=(--find-links "$d"); done
if "${pip[@]}" uv 2>/dev/null \
   && .venv/bin/uv pip install -q --compile-bytecode --python .venv/bin/python "${links[@]}" -c requirements/constraints.txt \
        torch==2.13.0 -e ".[notebooks,test,cluster]"; then
  echo "setup: installed with uv"
else
  echo "setup: uv unavailable or failed; installing with pip" >&2
  # torch first and alone: with torch==2.13.0 already present nothing else can pull a CUDA build
  "${pip[@]}" torch==2.13.0
  "${pip[@]}" -e ".[notebooks,test,cluster]"  # cluster: Ray, for alkit run --executor ray (its CI test)
fi
.venv/bin/python -c "import torch, alkit; print('setup: torch', torch.__version__, '| alkit ready')"
