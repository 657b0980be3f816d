#!/usr/bin/env bash
# Step 2 of the device kit, THERE (the GPU machine, no network; run from the repo root):
#   bash scripts/device/run.sh OUTDIR PARAMS... [--jobs N] [--time-limit S] [--devices ...] [other `alkit run` options]
# OUTDIR is the device tool's "$OUT". Uses the carried .devkit/ (data, wheels, commit), prints the
# travelling size and the GPU, hashes results/ before the run, runs
#   python -m alkit run PARAMS... --jobs N --time-limit S      (defaults: --jobs 4, --time-limit 540)
# (finished runs and cycles on disk are skipped, so the same command resumes), and packs every new or
# changed file under results/ into OUTDIR: results.tar.gz.NN parts + manifest.json + run.log, within
# what the device tool brings back (8 files, 16 MiB each, 64 MiB together) or an `error:` line.
# Exit status: alkit's (0 also when the time limit stopped it early), 1 if packing was refused.
# Environment: DEVKIT (kit folder, default .devkit), ALKIT_RESULTS (results root, default results),
# PYTHON (default .venv/bin/python if present, else python3), DEVKIT_GRACE (seconds past the time
# limit before alkit is killed, default 20), DEVKIT_DEADLINE (alkit is killed at the latest this many
# seconds after run.sh started, default 580: packing must end inside the tool's 600 s),
# DEVKIT_SITE (wheel install folder, default /tmp/site).
set -uo pipefail
t0=$(date +%s)
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
err() { echo "error: $*" >&2; exit 1; }
[ $# -ge 2 ] || { echo "usage: bash scripts/device/run.sh OUTDIR PARAMS... [--jobs N] [--time-limit S] [...]" >&2; exit 2; }
mkdir -p "$1" || err "cannot create $1"
outdir=$(cd "$1" && pwd); shift
[ -z "$(ls -A "$outdir")" ] || err "$outdir is not empty: parts of two packs would mix"
kit=${DEVKIT:-.devkit}
results=${ALKIT_RESULTS:-results}
py=${PYTHON:-}
if [ -z "$py" ]; then
  if [ -x "$repo/.venv/bin/python" ]; then py=$repo/.venv/bin/python; else py=python3; fi
fi
devkit() { "$py" "$repo/scripts/device/devkit.py" "$@"; }

[ -d "$kit/data" ] || err "$kit/data is missing: run 'bash scripts/device/prepare.sh' on the machine with the data and carry $kit"
export ALKIT_DATA
ALKIT_DATA=$(cd "$kit/data" && pwd)
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
[ -f "$kit/commit.txt" ] && export ALKIT_GIT_COMMIT="$(cat "$kit/commit.txt")"
if compgen -G "$kit/wheels/*.whl" >/dev/null; then
  site=${DEVKIT_SITE:-/tmp/site}
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" "$kit"/wheels/*.whl \
    || err "installing the carried wheels failed (two versions of one package? a missing dependency?)"
  export PYTHONPATH="$PYTHONPATH:$site"
  echo "wheels: installed $(ls "$kit"/wheels/*.whl | wc -l) into $site"
fi

# alkit run options: defaults for --jobs and --time-limit, the results root kit and alkit share
args=("$@"); jobs=""; limit=""; root_given=""
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    --jobs) jobs=${args[i+1]:-} ;;
    --jobs=*) jobs=${args[i]#*=} ;;
    --time-limit) limit=${args[i+1]:-} ;;
    --time-limit=*) limit=${args[i]#*=} ;;
    --results-root) results=${args[i+1]:-}; root_given=1 ;;
    --results-root=*) results=${args[i]#*=}; root_given=1 ;;
  esac
done
# 4: on an H200 the aggregate rate stops growing at 4 processes (classifier 990, vaal 178, m2_vaal 75 it/s at 4;
# 1,001 / 186 / 75 at 15: benchmarks/results/bench_gpu_h200.json); more runs at once only make each cycle longer
[ -n "$jobs" ] || { jobs=4; args+=(--jobs "$jobs"); }
[ -n "$limit" ] || { limit=540; args+=(--time-limit "$limit"); }
[ -n "$root_given" ] || args+=(--results-root "$results")
# alkit is killed at its time limit + DEVKIT_GRACE, and in any case DEVKIT_DEADLINE s after this script
# started, so that packing ends inside the device tool's 600 s
deadline=${DEVKIT_DEADLINE:-580}

echo "== device kit $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
devkit tree-size --skip "$outdir" --kit "$kit" || true
command -v nvidia-smi >/dev/null && nvidia-smi -L || echo "nvidia-smi: not available"
"$py" -c 'import sys, torch; n = torch.cuda.device_count(); print("python", sys.version.split()[0], "| torch", torch.__version__, "| cuda available", torch.cuda.is_available(), "|", n, "device(s):", ", ".join(torch.cuda.get_device_name(i) for i in range(n)) or "-")' \
  || err "python3 cannot import torch"
echo "data: ALKIT_DATA=$ALKIT_DATA | results: $results | commit: ${ALKIT_GIT_COMMIT:-unknown}"

work=$(mktemp -d)
devkit snapshot "$results" "$work/snapshot.json" || err "cannot hash $results"
start=$(date +%s)
hard=$(awk -v t="$limit" -v g="${DEVKIT_GRACE:-20}" -v d="$deadline" -v e="$((start - t0))" \
  'BEGIN { h = t + g; if (h > d - e) h = d - e; if (h < 1) h = 1; printf "%d", h + 0.999 }')
echo "jobs $jobs, time limit $limit s, alkit stopped at $hard s if still running"
echo "== $py -m alkit run ${args[*]}"
timeout -k 5 "$hard" "$py" -m alkit run "${args[@]}" 2>&1 | tee "$work/run.log"
rc=${PIPESTATUS[0]}
echo "== alkit run: exit status $rc after $(( $(date +%s) - start )) s"
[ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && echo "note: alkit was stopped at $hard s; the cycles it finished are on disk and packed"
devkit pack "$results" "$work/snapshot.json" "$outdir" --log "$work/run.log" --alkit-exit "$rc" --commit "${ALKIT_GIT_COMMIT:-}" || exit 1
rm -rf "$work"
ls -l "$outdir"
exit "$rc"
