#!/usr/bin/env bash
# One chunk of the cpu profile, detached: each step is an `alkit run` whose --time-limit is what is left before
# DEADLINE (epoch seconds), so no cycle starts that cannot end before it. Finished cycles stay on disk and resume.
#   setsid nohup bash scripts/run_cpu_chunk.sh DEADLINE "ARGS1" "ARGS2" ... > log 2>&1 &
set -u
cd "$(dirname "$0")/.."
deadline=$1; shift
for step in "$@"; do
  left=$(( deadline - $(date +%s) ))
  if [ "$left" -lt 120 ]; then echo "chunk: $(date -u +%T) no time left for: $step"; break; fi
  echo "chunk: $(date -u +%T) alkit run $step --time-limit $left"
  # shellcheck disable=SC2086
  ALKIT_QUIET=1 .venv/bin/python -m alkit run $step --time-limit "$left" --quiet
  echo "chunk: $(date -u +%T) exit $?"
done
echo "chunk: $(date -u +%T) done"
